"""The national clouds of Microsoft Graph: one row picks the Graph host, the token scope, the
sign-in authority and the hosts upload sessions may point at together; docs/graph.md
("Credentials and clouds") says why they are never configured separately."""

from __future__ import annotations

from dataclasses import dataclass

from shared.domain.errors import ConfigurationError


@dataclass(frozen=True)
class GraphCloud:
    name: str
    graph_host: str  # https://...
    authority_host: str  # host name only, as azure-identity wants it
    # Host names only. Graph's upload sessions hand out a URL on the cloud's Exchange Online host
    # (the old Outlook REST endpoint), not on the Graph host; the URL carries its own token.
    upload_hosts: tuple[str, ...]

    @property
    def scope(self) -> str:
        return f"{self.graph_host}/.default"

    @property
    def base_url(self) -> str:
        return f"{self.graph_host}/v1.0"


# Upload hosts, from Microsoft's own pages:
# - global: the uploadUrl of the example on learn.microsoft.com/graph/api/attachment-createuploadsession
#   is on outlook.office.com; answers seen in the field use outlook.office365.com
#   (microsoftgraph/microsoft-graph-docs-contrib issue #8880); "Microsoft 365 URLs and IP address
#   ranges", Exchange Online ID 1, serves it on outlook.cloud.microsoft, outlook.office.com and
#   outlook.office365.com;
# - GCC High: outlook.office365.us ("Microsoft 365 U.S. Government GCC High endpoints", Exchange ID 1);
# - DoD: outlook-dod.office365.us and webmail.apps.mil ("Microsoft 365 U.S. Government DoD endpoints",
#   Exchange ID 1);
# - 21Vianet: partner.outlook.cn ("API endpoints of Office 365 operated by 21Vianet", Mail API).
# Graph's national-cloud table marks createUploadSession unavailable in US Government L4/L5; the
# hosts are listed there all the same, so that a session Graph does grant is not refused here.
_GLOBAL = GraphCloud(
    "global", "https://graph.microsoft.com", "login.microsoftonline.com",
    ("outlook.office.com", "outlook.office365.com", "outlook.cloud.microsoft"),
)
_USGOV = GraphCloud("usgov", "https://graph.microsoft.us", "login.microsoftonline.us", ("outlook.office365.us",))
_DOD = GraphCloud(
    "dod", "https://dod-graph.microsoft.us", "login.microsoftonline.us",
    ("outlook-dod.office365.us", "webmail.apps.mil"),
)
_CHINA = GraphCloud(
    "china", "https://microsoftgraph.chinacloudapi.cn", "login.chinacloudapi.cn", ("partner.outlook.cn",)
)

CLOUDS: dict[str, GraphCloud] = {
    "global": _GLOBAL,
    "gcc": _GLOBAL,  # GCC (moderate) runs on the commercial Graph endpoint
    "usgov": _USGOV,
    "gcchigh": _USGOV,
    "dod": _DOD,
    "china": _CHINA,
}


def resolve_cloud(cloud: str) -> GraphCloud:
    key = cloud.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    try:
        return CLOUDS[key]
    except KeyError:
        raise ConfigurationError(
            f"unknown Graph cloud {cloud!r}; expected one of {', '.join(sorted(CLOUDS))}"
        ) from None
