"""``python -m bench.evidence``: what the chain of evidence costs to seal and to verify.

    python -m bench.evidence                  # 5,000 and 20,000 records
    python -m bench.evidence --sizes 1000     # any sizes (tests/test_bench.py runs a small one)
    python -m bench.evidence --json

For each size: a synthetic window of that many records (bench/scale_window.py's mix: 1.1 mailboxes a
record, 1% skipped duplicates, 0.5% poisoned) written into the table ledger on Azurite with a claim
check per record in the claim-check table; then the window is sealed with the real adapters (its
admin reports and manifest kept in the evidence container, the chain's head moved) and verified
offline (every manifest hashed, every claim check read and hashed). The figures: seconds for each,
the manifest's bytes per record, and both extrapolated linearly to a day of 2,000,000 records — the
read of claim checks dominates verify, the ledger's scan dominates sealing. Azurite on one machine is
slower than Azure Storage; the figures are an upper bound for the code's own cost.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from bench.scale_window import WindowWriter, claim_check_for, key_for, synthetic_window

DAY = 2_000_000


def measure(size: int) -> dict[str, Any]:
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient

    from shared.adapters.azure_tables import TableWindowLedger
    from shared.adapters.evidence_blobs import BlobEvidenceChain, BlobEvidenceStore
    from shared.adapters.table_records import TableRecordStore
    from shared.local.azurite import Azurite
    from shared.service.evidence_chain import seal_window
    from shared.service.verify import verify

    with Azurite() as azurite:
        blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
        tables = TableServiceClient.from_connection_string(azurite.connection_string)
        ledger = TableWindowLedger(tables, "benchledger")
        records = TableRecordStore(tables, "benchrecords", blobs, "bench-records")
        evidence = BlobEvidenceStore(blobs, "bench-evidence")
        chain = BlobEvidenceChain(blobs, "bench-state")
        now = datetime.now(UTC).replace(microsecond=0)
        writer = WindowWriter(ledger, synthetic_window(now))
        writer.write(size)
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda n: records.put(key_for(n), claim_check_for(n)), range(size)))
        summary = ledger.summary(writer.window_id)
        assert summary is not None and summary.reconciled, "the synthetic window must reconcile"

        started = time.monotonic()
        sealed = seal_window(ledger, evidence, chain, summary, now)
        seal_seconds = time.monotonic() - started
        manifest_bytes = sum(len(chunk) for chunk in evidence.stream(sealed.link.name))

        started = time.monotonic()
        result = verify(evidence, chain, records)
        verify_seconds = time.monotonic() - started
    assert result.ok and result.claim_checks == size, [f.line() for f in result.findings[:5]]
    return {
        "records": size,
        "seal_seconds": round(seal_seconds, 2),
        "verify_offline_seconds": round(verify_seconds, 2),
        "manifest_bytes": manifest_bytes,
        "manifest_bytes_per_record": round(manifest_bytes / size, 1),
        "verify_records_per_second": round(size / verify_seconds),
        "day_of_2m": {
            "manifest_mib": round(manifest_bytes / size * DAY / 2**20),
            "seal_minutes": round(seal_seconds / size * DAY / 60, 1),
            "verify_offline_minutes": round(verify_seconds / size * DAY / 60, 1),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.evidence", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5000,20000", help="records per window, comma-separated")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(part) for part in args.sizes.split(",") if part.strip()]
    rows = [measure(size) for size in sizes]
    if args.json:
        print(json.dumps({"evidence": rows}, indent=2))
        return 0
    print("chain of evidence: seal and verify (offline) on Azurite")
    for row in rows:
        day = row["day_of_2m"]
        print(f"  {row['records']:>9,} records: seal {row['seal_seconds']:>7} s, "
              f"verify {row['verify_offline_seconds']:>7} s ({row['verify_records_per_second']:,}/s), "
              f"manifest {row['manifest_bytes_per_record']} B/record")
        print(f"      a day of 2,000,000: manifest {day['manifest_mib']} MiB, seal {day['seal_minutes']} min, "
              f"verify {day['verify_offline_minutes']} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
