"""The Bicep and Terraform templates deploy what the code uses, and only that.

Every queue, container, table and app setting the code reads (derived from shared/settings.py: the
queue constants, the container and table defaults, ``Settings.model_fields`` with their
environment names) must be created or set by BOTH templates, and the templates may set nothing the
code does not read except the Functions platform's own settings, listed below with the reason for
each.

Role assignments: both templates grant the same roles on the same scopes, every one of them to the
app's managed identity and on the narrowest scope Azure allows (one container, one queue, one table,
one Key Vault secret, the Application Insights component); the only account-level grant is read-only
Reader, for the Functions host's container listing. No broad role (Owner, Contributor, Storage
Account Contributor, ...) appears, and Storage Blob Data Owner only on the host's own containers.
The one custom role, the evidence writer, is defined alike in both templates, may create, read and
append but never delete, and is granted on the evidence container only.

Evidence store (issue 18, after the report retention tests): both templates create the evidence
container under a container-level time-based retention policy that they leave unlocked, with
protected append writes for append blobs only, the period from a parameter with the code's default
and bounds; the account keeps nothing that container-level WORM excludes; a legal hold is requested
(container metadata, an output with the command), never placed by a template.

Alerts: both templates deploy the same scheduled log alerts (the WhatsApp webhook's only with its
app secret), and their queries name only metrics, functions and values the code has. The optional
WhatsApp secrets are written, granted and referenced only when given; their settings are empty otherwise.

Blob triggers: for every Event Grid blob trigger the code registers (chat_export_blob on
chat-exports, connection AzureWebJobsStorage; eml_drop_blob on eml-drops, connection EmlDrops),
both templates create its container in the storage account its connection names, that account's
Event Grid system topic and a BlobCreated subscription on that container delivering to the
function's Blobs extension webhook with the blobs_extension system key, the queues the trigger
passes its events through and the host ID that names one of them, each with its role.

Vendor EML drop zone (issue 21, after the evidence store tests): behind a switch that is off by
default, both templates create a second storage account with a hierarchical namespace, SFTP and
local users, the container eml-drops, one SSH-key-only local user whose home it is and who cannot
delete, and the identity's role there: a custom role without delete whose writes a role assignment
condition limits to *.report.json. The subscription passes completed uploads only (data.api).

Monitoring (the end of this module): both templates deploy the query pack and the workbook from
the same files in infra/monitoring/, every query there is plausible KQL that uses only telemetry
the code emits, and the storage lifecycle rule deletes old admin reports and nothing else.

The templates are parsed by python-hcl2 and pycep-parser, which live in their own virtualenvs
(.venv-infra/, made by scripts/infra-check: python-hcl2 clashes with checkov's hcl2 fork). This
module runs them through infra/scripts/parse_templates.py and skips, saying so, when they are not
installed.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import os
import re
import subprocess
import typing
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import shared.settings as settings_module
from shared.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
BICEP_FILE = REPO_ROOT / "infra" / "bicep" / "main.bicep"
TERRAFORM_DIR = REPO_ROOT / "infra" / "terraform"
PARSER = REPO_ROOT / "infra" / "scripts" / "parse_templates.py"
INFRA_VENVS = REPO_ROOT / ".venv-infra"
PARSER_PYTHONS = {
    "terraform": INFRA_VENVS / "hcl2" / "bin" / "python",  # python-hcl2
    "bicep": INFRA_VENVS / "checkov" / "bin" / "python",  # pycep-parser, as checkov uses it
}
PARSER_PACKAGES = {"terraform": "python-hcl2", "bicep": "pycep-parser"}

# Settings the code reads that a deployment must NOT set, and why.
NOT_DEPLOYED = {
    "AzureWebJobsStorage": "a connection string (keys); a deployment uses identity-based storage, shared keys are off",
    "MAPPING_FILE": "a local CSV path for local runs; a deployment reads MAPPING_BLOB",
    "DIRECTORY": "'file' is a local stand-in; a deployment uses the default, graph",
    "DIRECTORY_FILE": "only with DIRECTORY=file (local)",
    "MAILBOX_WRITER": "'eml' is a local stand-in; a deployment uses the default, graph",
    "EML_MAILBOX_DIR": "only with MAILBOX_WRITER=eml (local)",
    "GRAPH_BASE_URL": "test servers only",
    "GRAPH_ACCESS_TOKEN": "accepted only with a loopback GRAPH_BASE_URL (tests)",
    "GRAPH_CLIENT_SECRET": "the templates support the managed identity or a certificate, never a client secret",
    "GRAPH_CERTIFICATE_PATH": "a file path; a deployment passes the certificate as a Key Vault reference",
    "GRAPH_CERTIFICATE_PASSWORD": "a Key Vault certificate reference delivers a PFX without a password",
    "EmlDrops": "a connection string to the drop account, for local runs (Azurite); a deployment gives the "
    "identity-based connection EmlDrops__blobServiceUri, __clientId and __credential instead (shared keys are off)",
}

# Settings the Functions platform reads, which Settings does not; both templates must set them.
# (If Settings starts reading one, move it out of here: test_the_exception_lists_name_real_settings
# says so. The storage service URIs moved out when the code began reading them for national clouds.)
# Not FUNCTIONS_EXTENSION_VERSION / FUNCTIONS_WORKER_RUNTIME: Flex Consumption takes the runtime
# from functionAppConfig and rejects those settings.
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__credential": "identity-based host storage: 'managedidentity'",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "where the host sends its telemetry; shared/telemetry.py reads it too "
    "(from os.environ, not Settings) to point the app's OpenTelemetry exporter at the same component",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "keyless ingestion with the managed identity (local auth is off), "
    "for the host and for shared/telemetry.py, which reads it from os.environ (not Settings) to give OpenTelemetry "
    "an Entra ID credential for that identity",
    "AzureFunctionsWebHost__hostid": "the Functions host ID, set so that the blob trigger's host queue "
    "azure-webjobs-blobtrigger-<host id> has a name the templates know (on Flex Consumption the default ID is an "
    "MD5 hash of the site name, which Bicep cannot compute), and its role can be scoped to that queue",
    "EmlDrops__credential": "the identity-based connection of eml_drop_blob: 'managedidentity' (with __clientId, "
    "which the code reads too, it selects the user-assigned identity for the host and the Python blob extension)",
    "EmlDrops__queueServiceUri": "the queue service of eml_drop_blob's connection, where the Blobs extension puts a "
    "blob that failed five times (webjobs-blobtrigger-poison); required beside __blobServiceUri for a blob trigger "
    "(Functions docs, Blob storage connections); the templates name the main account's, whose poison queue exists",
}

# Containers the platform uses, which the code does not.
HOST_CONTAINERS = {
    "azure-webjobs-hosts": "the Functions host's leases (host, timer singleton), timer schedule monitor and host id",
    "azure-webjobs-secrets": "the Functions host's key store (function and host keys; archive_status needs one)",
}
PLATFORM_CONTAINERS = {
    "app-package": "the Flex Consumption deployment package (functionAppConfig.deployment)",
    **HOST_CONTAINERS,  # created by the templates so that the host's role can be scoped to them
}

# Queues the Functions host uses for the code's Event Grid blob triggers (Blobs extension 5.x), which
# the code does not name; created by the templates so that their role can be scoped to them. A name
# built from the host ID is written with HOST_ID in its place (see with_host_id).
HOST_ID = "{host id}"
BLOB_TRIGGER_HOST_QUEUE = f"azure-webjobs-blobtrigger-{HOST_ID}"
BLOB_TRIGGER_QUEUES = {
    BLOB_TRIGGER_HOST_QUEUE: "the Blobs extension webhook puts each Event Grid event on this host queue "
    "(BlobTriggerQueueWriter), which the host reads to run the function",
    "webjobs-blobtrigger-poison": "a blob whose function failed maxDequeueCount times (HostQueueNames."
    "BlobTriggerPoisonQueue), in the queue service of the trigger's connection: AzureWebJobsStorage's, which "
    "both templates also give EmlDrops as its __queueServiceUri",
}
# The connections the code's blob triggers name, each with the role the identity holds on the
# trigger's container and the switches that create the trigger's subscription (parameter, default).
# AzureWebJobsStorage: the main account, where the code reads uploads and writes reports beside them.
# EmlDrops: the vendor's SFTP account, where the code reads drops and writes nothing but the reports
# (EML_DROP_ROLE below); its subscription exists only with the drop zone, which is off by default.
CONNECTION_SWITCHES = {
    "AzureWebJobsStorage": {"event subscriptions": True},
    "EmlDrops": {"event subscriptions": True, "eml drop zone": False},
}
SWITCH_NAMES = {  # template parameter or variable -> the switch it is
    "deployEventSubscriptions": "event subscriptions", "create_event_subscriptions": "event subscriptions",
    "emlDropZone": "eml drop zone", "eml_drop_zone": "eml drop zone",
}
# The storage accounts: Bicep symbol or Terraform azurerm_storage_account name -> the account.
MAIN_ACCOUNT, DROP_ACCOUNT = "main", "eml drops"
ACCOUNT_NAMES = {"storage": MAIN_ACCOUNT, "main": MAIN_ACCOUNT,
                 "emlDropStorage": DROP_ACCOUNT, "eml_drops": DROP_ACCOUNT}

# --- Role assignments ----------------------------------------------------------------------------
#
# A grant is (principal, role name, scope). Scopes are written the same way for both templates:
# "container:<name>", "queue:<name>", "table:<name>", "key-vault-secret:<name>" (a parameter as
# "${snake_name}"),
# "application-insights", and the broad ones "storage-account", "key-vault", "resource-group",
# "subscription". The principal is "identity" (the app's managed identity), "deployer" (whoever runs
# the template) or what the template says.

BUILTIN_ROLES = {  # name -> GUID, the same in every Azure cloud
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "Role Based Access Control Administrator": "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
    "Storage Account Contributor": "17d1049b-9a84-46fb-8f53-869881c3d3ab",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Blob Data Reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Queue Data Reader": "19e7f393-937e-4f77-808e-94535e297925",
    "Storage Queue Data Message Processor": "8a0f0c08-91a1-4084-bc3d-661d67233fed",
    "Storage Queue Data Message Sender": "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Key Vault Administrator": "00482a5a-887f-4fb3-b363-3b7fe8e74483",
    "Key Vault Secrets Officer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}
ROLE_NAMES_BY_ID = {guid: name for name, guid in BUILTIN_ROLES.items()}

# Roles that reach far beyond what one function app needs: never granted by the templates.
BROAD_ROLES = {
    "Owner", "Contributor", "User Access Administrator", "Role Based Access Control Administrator",
    "Storage Account Contributor", "Key Vault Administrator", "Key Vault Secrets Officer",
}
# Scopes narrower than which Azure has none for the resource: a grant must be on one of these...
NARROW_SCOPE_KINDS = {"container", "queue", "table", "key-vault-secret", "application-insights"}
# ...unless it is one of these, each needed at that scope and no narrower one exists.
JUSTIFIED_BROAD_GRANTS = {
    ("identity", "Reader", "storage-account"): "the Functions host's storage health check lists containers "
    "(azure-functions-host WebJobsStorageHealthCheck); List Containers is authorized only at the storage account "
    "or above, and Reader grants it with no data access",
}
DATA_CONTAINER_ROLE = "Storage Blob Data Contributor"  # the code: read, write, lease, append, list, delete
HOST_CONTAINER_ROLE = "Storage Blob Data Owner"  # what the Functions docs name for identity-based AzureWebJobsStorage
QUEUE_ROLE = "Storage Queue Data Contributor"  # triggers + host poison queues + the code's create/send/depth/replay
TABLE_ROLE = "Storage Table Data Contributor"  # ledger, deliveries: create on first use, reads, queries, transactions

# App settings that are Key Vault references -> the secret each names (GRAPH_CERTIFICATE's is a
# parameter). The WhatsApp ones and GRAPH_CERTIFICATE are optional: a reference, and the secret's
# grant, only when the secret is given (the grants are read as if every optional one were).
SECRET_REFERENCES = {
    "TELEMESSAGE_USERNAME": "telemessage-username",
    "TELEMESSAGE_PASSWORD": "telemessage-password",
    "GRAPH_CERTIFICATE": "${graph_certificate_name}",
    "WHATSAPP_VERIFY_TOKEN": "whatsapp-verify-token",
    "WHATSAPP_APP_SECRET": "whatsapp-app-secret",
    "WHATSAPP_ACCESS_TOKEN": "whatsapp-access-token",
}
# The optional secrets the templates write themselves (the Graph certificate is imported by hand):
# written, granted and referenced only when given; otherwise the setting is empty, which the code
# reads as "this source is off" (a reference to a secret that does not exist would not resolve, and
# App Service would hand the app the reference's own text as the value).
OPTIONAL_SECRET_SETTINGS = {
    setting: secret for setting, secret in SECRET_REFERENCES.items() if setting.startswith("WHATSAPP_")
}


# --- The evidence writer: the one custom role -----------------------------------------------------
#
# No built-in blob data role writes without delete, so the evidence container (WORM) gets a custom
# role with what shared/adapters/evidence_blobs.py does there and nothing else. A custom role is
# written in a grant as its permissions (custom_role_name), so that both templates must define the
# same permissions for their grants to be equal.

BLOB_ACTION = "Microsoft.Storage/storageAccounts/blobServices/containers/"
EVIDENCE_WRITER = {
    # Create Container (the code creates its container on first use and takes 409 as "it exists";
    # without this action the call is refused with 403 instead).
    "actions": (BLOB_ACTION + "write",),
    "notActions": (),
    "dataActions": (
        BLOB_ACTION + "blobs/add/action",  # create a blob, append a block (the manifests)
        BLOB_ACTION + "blobs/read",  # read blobs and their properties, list blobs
        BLOB_ACTION + "blobs/write",  # Put Blob, Put Block, Put Block List of a new blob
    ),
    "notDataActions": (),
}
# What no custom role may grant: deleting or moving a blob or a container, bypassing or writing
# immutability policies and legal holds, and wildcards that would include these.
FORBIDDEN_CUSTOM_ACTIONS = re.compile(
    r"(\*|/delete$|/permanentDelete/|/deleteBlobVersion/|/move/|/runAsSuperUser/|/immutableStorage/"
    r"|/immutabilityPolicies/|/setLegalHold/|/clearLegalHold/|/tags/write$|/manageOwnership/|/modifyPermissions/)",
    re.IGNORECASE)
CUSTOM_ROLE = "custom role "


def custom_role_name(permissions: dict) -> str:
    """A custom role as it appears in a grant: its permissions, each list sorted."""
    return CUSTOM_ROLE + json.dumps({key: sorted(permissions.get(key, ()))
                                     for key in ("actions", "notActions", "dataActions", "notDataActions")})


def custom_role_permissions(role: str) -> dict[str, list[str]]:
    return json.loads(role.removeprefix(CUSTOM_ROLE).split(CONDITION)[0])


def forbidden_actions(permissions: dict) -> list[str]:
    """The granted actions and data actions no custom role may have (a not-action subtracts: allowed)."""
    return [action for key in ("actions", "dataActions") for action in permissions.get(key, ())
            if FORBIDDEN_CUSTOM_ACTIONS.search(action)]


EVIDENCE_ROLE = custom_role_name(EVIDENCE_WRITER)

# What the blob trigger functions write beside each upload or drop (FILE.report.json, issues 17 and
# 21): excluded from the subscriptions so that a report never triggers a function, and the only
# blobs the identity may write in the vendor's drop container.
REPORT_SUFFIX = ".report.json"


# --- The EML drop reader: the second custom role, under a condition ------------------------------
#
# In the vendor's drop container the app reads every drop and writes only the reports beside them.
# A built-in role will not do: each blob role that writes also deletes, and Storage Blob Data
# Contributor holds the action containers/delete, which no assignment condition can restrict
# (conditions apply to data actions). So a custom role that may read, write and create, and an
# Azure ABAC condition (version 2.0) on its assignment that allows writing and creating only on a
# blob path ending .report.json. A grant under a condition is written "<role> under condition
# <version> <condition>", the condition with its whitespace normalized.
EML_DROP_READER = {
    "actions": (),
    "notActions": (),
    "dataActions": (
        BLOB_ACTION + "blobs/add/action",  # create a report
        BLOB_ACTION + "blobs/read",  # read a drop and its properties, list the container
        BLOB_ACTION + "blobs/write",  # write a report again with the outcomes
    ),
    "notDataActions": (),
}
REPORT_WRITES_ONLY = (
    f"((!(ActionMatches{{'{BLOB_ACTION}blobs/write'}}) AND !(ActionMatches{{'{BLOB_ACTION}blobs/add/action'}})) "
    f"OR (@Resource[{BLOB_ACTION}blobs:path] StringLike '*{REPORT_SUFFIX}'))")
CONDITION = " under condition "


def normalized_condition(text: str) -> str:
    """A role assignment condition as both templates write it, compared without layout: a Bicep
    multi-line string or a Terraform heredoc (its markers dropped), whitespace collapsed and none
    beside a parenthesis."""
    text = re.sub(r"^\"?<<-?(\w+)\n(.*)\n\s*\1\"?$", r"\2", text.strip(), flags=re.DOTALL)
    text = re.sub(r"\s+", " ", text.replace("\\'", "'")).strip()
    return re.sub(r"\s*([()])\s*", r"\1", text)


def with_condition(role: str, version: object, condition: str) -> str:
    return f"{role}{CONDITION}{version} {normalized_condition(condition)}"


EML_DROP_ROLE = with_condition(custom_role_name(EML_DROP_READER), "2.0", REPORT_WRITES_ONLY)
# The identity's role on a blob trigger's container, by the trigger's connection.
CONNECTION_CONTAINER_ROLES = {"AzureWebJobsStorage": DATA_CONTAINER_ROLE, "EmlDrops": EML_DROP_ROLE}


def evidence_container() -> str:
    return Settings.model_fields["evidence_container"].default


def trigger_container_roles() -> dict[str, str]:
    """Container -> the identity's role there, for every blob trigger's container: by its connection."""
    return {trigger["container"]: CONNECTION_CONTAINER_ROLES[trigger["connection"]]
            for trigger in code_blob_triggers().values()}


def expected_grants(deployment: Deployment) -> set[tuple[str, str, str]]:
    """Every grant the app needs, derived from the code and the platform; nothing more."""
    trigger_roles = trigger_container_roles()
    grants = {("identity", trigger_roles.get(c, DATA_CONTAINER_ROLE), f"container:{c}")
              for c in (code_containers() - {evidence_container()}) | {"app-package"}}
    grants.add(("identity", EVIDENCE_ROLE, f"container:{evidence_container()}"))
    grants |= {("identity", HOST_CONTAINER_ROLE, f"container:{c}") for c in HOST_CONTAINERS}
    grants |= {("identity", QUEUE_ROLE, f"queue:{q}") for q in code_queues() | platform_queues()}
    grants |= {("identity", TABLE_ROLE, f"table:{t}") for t in code_tables()}
    grants |= {("identity", "Key Vault Secrets User", f"key-vault-secret:{deployment.secret_references.get(s)}")
               for s in SECRET_REFERENCES}
    grants.add(("identity", "Monitoring Metrics Publisher", "application-insights"))
    grants |= set(JUSTIFIED_BROAD_GRANTS)
    return grants


def grant_problems(grants: set[tuple[str, str, str]]) -> list[str]:
    """Grants broader than least privilege; [] when every one is as narrow as Azure allows."""
    problems = []
    for principal, role, scope in sorted(grants):
        grant = f"{role} on {scope} for {principal}"
        kind, _, name = scope.partition(":")
        if role in BROAD_ROLES:
            problems.append(f"broad role: {grant}")
        if kind not in NARROW_SCOPE_KINDS and (principal, role, scope) not in JUSTIFIED_BROAD_GRANTS:
            problems.append(f"broad scope: {grant} (grant it on the container, queue, table or secret it is for)")
        if role == "Storage Blob Data Owner" and not (kind == "container" and name in HOST_CONTAINERS):
            problems.append(f"Storage Blob Data Owner outside the host's containers: {grant}")
        if principal != "identity":
            problems.append(f"a principal other than the app's identity holds a role: {grant}")
        if role.startswith(CUSTOM_ROLE) and (forbidden := forbidden_actions(custom_role_permissions(role))):
            problems.append(f"a custom role grants {forbidden} on {scope} to {principal}")
        if kind == "container" and name == evidence_container() and role != EVIDENCE_ROLE:
            problems.append(f"a role other than the evidence writer on the evidence container: {grant}")
        if kind == "container" and trigger_container_roles().get(name) == EML_DROP_ROLE and role != EML_DROP_ROLE:
            problems.append(f"a role other than the drop reader under its condition on a drop container: {grant}")
        if CONDITION in role and not role.split(CONDITION)[1].startswith("2.0 "):
            problems.append(f"a condition of a version other than 2.0: {grant}")
    return problems


# --- What the code uses --------------------------------------------------------------------------


def env_name(name: str, info) -> str:
    alias = info.validation_alias
    return alias if isinstance(alias, str) else name.upper()


def code_settings() -> dict[str, str]:
    """Environment name -> field name, for every setting Settings reads."""
    return {env_name(name, info): name for name, info in Settings.model_fields.items()}


def code_queues() -> set[str]:
    return {value for name, value in vars(settings_module).items() if name.endswith("_QUEUE")}


CONTAINER_SETTINGS = ("RECORDS_CONTAINER", "STATE_CONTAINER", "EVIDENCE_CONTAINER")


def code_containers() -> set[str]:
    """The containers the code reads and writes: its settings' defaults and its blob triggers' containers."""
    return {Settings.model_fields[code_settings()[setting]].default for setting in CONTAINER_SETTINGS} \
        | {trigger["container"] for trigger in code_blob_triggers().values()}


@functools.cache
def code_blob_triggers() -> dict[str, dict[str, str]]:
    """Function name -> its blob trigger binding (container, path, connection, source), for every blob
    trigger the function app registers, as the host indexes them."""
    import function_app
    from shared.local.host_runner.functions import registered_functions

    triggers = {}
    for function in registered_functions(function_app.app):
        for binding in json.loads(function.get_function_json())["bindings"]:
            if binding["type"] == "blobTrigger":
                triggers[function.get_function_name()] = {
                    "container": binding["path"].split("/", 1)[0], "path": binding["path"],
                    "connection": binding.get("connection"), "source": binding.get("source"),
                }
    return triggers


def platform_queues() -> set[str]:
    """The host's blob trigger queues, when the code has a blob trigger."""
    return set(BLOB_TRIGGER_QUEUES) if code_blob_triggers() else set()


def with_host_id(name: str) -> str:
    """A name as both templates build it from the host ID, the ID written as HOST_ID:
    'azure-webjobs-blobtrigger-${functionHostId}' (Bicep), '"...${local.function_host_id}"' (Terraform)."""
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1]
    return name.replace("${functionHostId}", HOST_ID).replace("${local.function_host_id}", HOST_ID)


def table_settings() -> dict[str, str]:
    """Environment name -> field name of every table the code uses (``ledger_table``, ``delivery_table``)."""
    return {env: name for env, name in code_settings().items() if name.endswith("_table")}


def code_tables() -> set[str]:
    # The defaults, not Settings(): an environment variable must not change what is expected.
    return {Settings.model_fields[name].default for name in table_settings().values()}


@dataclass
class Deployment:
    """What one template creates or sets, with values resolved where they are literals."""

    name: str
    queues: set[str] = field(default_factory=set)
    containers: set[str] = field(default_factory=set)
    tables: set[str] = field(default_factory=set)
    settings: dict[str, object] = field(default_factory=dict)
    grants: set[tuple[str, str, str]] = field(default_factory=set)  # (principal, role, scope), see above
    secret_references: dict[str, str] = field(default_factory=dict)  # Key Vault reference setting -> secret
    setting_defaults: dict[str, object] = field(default_factory=dict)  # setting -> default of the parameter behind it
    container_accounts: dict[str, str] = field(default_factory=dict)  # container -> the account it is in
    # connection (AzureWebJobsStorage, EmlDrops) -> the account its __blobServiceUri / __queueServiceUri
    # names, as if every optional parameter were set
    connection_accounts: dict[str, str] = field(default_factory=dict)
    connection_queue_accounts: dict[str, str] = field(default_factory=dict)


def expected_settings() -> set[str]:
    return (set(code_settings()) - set(NOT_DEPLOYED)) | set(PLATFORM_SETTINGS)


def consistency_problems(deployment: Deployment) -> list[str]:
    """Everything in which one template departs from what the code uses; [] when it matches."""
    problems: list[str] = []
    name = deployment.name

    def compare(kind: str, used: set[str], made: set[str], allowed_extra: set[str] = frozenset()) -> None:
        for missing in sorted(used - made):
            problems.append(f"{name}: {kind} {missing!r} is used by the code but not created")
        for extra in sorted(made - used - allowed_extra):
            problems.append(f"{name}: {kind} {extra!r} is created but the code does not use it")

    compare("queue", code_queues() | platform_queues(), deployment.queues)
    compare("container", code_containers() | set(PLATFORM_CONTAINERS), deployment.containers)
    compare("table", code_tables(), deployment.tables)
    # pydantic-settings reads names case-insensitively; App Service settings are exact. Compare exact.
    compare("app setting", expected_settings(), set(deployment.settings))
    for setting in CONTAINER_SETTINGS:
        value = deployment.settings.get(setting)
        if setting in deployment.settings and value not in deployment.containers:
            problems.append(f"{name}: {setting}={value!r} names no container the template creates")
    for setting in sorted(table_settings()):
        value = deployment.settings.get(setting)
        if setting in deployment.settings and value not in deployment.tables:
            problems.append(f"{name}: {setting}={value!r} names no table the template creates")
    return problems


def template_differences(bicep: Deployment, terraform: Deployment) -> list[str]:
    problems = []
    for kind in ("queues", "containers", "tables", "grants"):
        a, b = getattr(bicep, kind), getattr(terraform, kind)
        if a != b:
            problems.append(f"{kind}: only in Bicep {sorted(a - b)}, only in Terraform {sorted(b - a)}")
    if set(bicep.settings) != set(terraform.settings):
        problems.append(f"app settings: only in Bicep {sorted(set(bicep.settings) - set(terraform.settings))}, "
                        f"only in Terraform {sorted(set(terraform.settings) - set(bicep.settings))}")
    return problems


# --- Parsing (in the infra virtualenvs) ----------------------------------------------------------


def parse(kind: str, target: Path) -> dict:
    python = PARSER_PYTHONS[kind]
    if not python.exists():
        if os.environ.get("INFRA_CHECK"):  # scripts/infra-check made the virtualenvs: missing is an error
            pytest.fail(f"{python} is missing")
        pytest.skip(f"{PARSER_PACKAGES[kind]} is not installed in {python.parent.parent.relative_to(REPO_ROOT)}: "
                    "run scripts/infra-check, which creates .venv-infra/ and runs these tests")
    result = subprocess.run([str(python), str(PARSER), kind, str(target)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{kind} template does not parse:\n{result.stderr}"
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def bicep_json() -> dict:
    return parse("bicep", BICEP_FILE)


@pytest.fixture(scope="module")
def terraform_json() -> dict:
    return parse("terraform", TERRAFORM_DIR)


# --- Reading the parsed Bicep --------------------------------------------------------------------


def strings_in(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings_in(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    return []


def bicep_deployment(parsed: dict) -> Deployment:
    variables = {name: spec["value"] for name, spec in parsed.get("variables", {}).items()}
    parameters = parsed.get("parameters", {})
    resources = parsed.get("resources", {})

    def resolve(value):
        # pycep gives identifiers and string literals alike as str: a str naming a variable is one.
        seen = set()
        while isinstance(value, str) and value in variables and value not in seen:
            seen.add(value)
            value = variables[value]
        return value

    def names_of(resource: dict) -> set[str]:
        loop, _, body = bicep_body(resource)
        if loop is not None:  # [for x in <array variable>: {...}]
            return {resolve(item) for item in resolve(loop["detail"]["array_name"])}
        return {resolve(body["name"])}

    def names(resource_type: str) -> set[str]:
        return {name for resource in resources.values() if resource["type"] == resource_type
                for name in names_of(resource)}

    deployment = Deployment(
        "bicep",
        queues={with_host_id(q) for q in names("Microsoft.Storage/storageAccounts/queueServices/queues")},
        containers=names("Microsoft.Storage/storageAccounts/blobServices/containers"),
        tables=names(BICEP_TABLE),
    )
    # App settings live in the site's siteConfig only: a sites/config resource would replace them unseen.
    assert not [n for n, r in resources.items() if r["type"].startswith("Microsoft.Web/sites/config")]
    sites = [r for r in resources.values() if r["type"] == "Microsoft.Web/sites"]
    assert len(sites) == 1, "one function app expected"
    app_settings = sites[0]["config"]["properties"]["siteConfig"]["appSettings"]
    if "loop_type" in app_settings:  # [for s in items(<object variable>): {name: s.key, value: s.value}]
        settings = resolve(app_settings["loop_type"]["detail"]["object_name"])
    else:
        settings = {entry["name"]: entry["value"] for entry in app_settings}
    deployment.settings = {name: resolve(value) for name, value in settings.items()}
    for name, value in settings.items():
        referenced = [s for s in strings_in(value) if s in parameters]
        if len(referenced) == 1 and parameters[referenced[0]].get("default") is not None:
            deployment.setting_defaults[name] = parameters[referenced[0]]["default"]
    deployment.grants = bicep_grants(parsed)
    for resource in resources.values():
        if resource["type"] == BICEP_CONTAINER:  # parent: the blob service, whose parent is the account
            service = bicep_body(resources[bicep_body(resource)[2]["parent"]])[2]
            for name in names_of(resource):
                deployment.container_accounts[name] = ACCOUNT_NAMES.get(service["parent"], service["parent"])
    for name, value in settings.items():
        for suffix, accounts in (("__blobServiceUri", deployment.connection_accounts),
                                 ("__queueServiceUri", deployment.connection_queue_accounts)):
            if name.endswith(suffix):
                if isinstance(value, dict) and value.get("operator", {}).get("type") == "conditional":
                    value = value["operator"]["operands"]["true_value"]  # as if the optional part were on
                symbol = bicep_text(value).split(".")[0]  # <account>.properties.primaryEndpoints.<service>
                accounts[name.removesuffix(suffix)] = ACCOUNT_NAMES.get(symbol, symbol)
    evaluate = BicepEvaluator(parsed)
    for setting in SECRET_REFERENCES:
        value = settings.get(setting)
        # '@Microsoft.KeyVault(SecretUri=${<secret>.properties.secretUri})', or a URI built from a parameter
        names = [n for text in strings_in(value) for n in re.findall(r"\$\{(\w+)", text)]
        secrets = [evaluate.scope(n, {}) for n in names if resources.get(n, {}).get("type") == KV_SECRET]
        secrets += [f"key-vault-secret:{evaluate(n, {})}" for n in names if n in parameters]
        if len(secrets) == 1:
            deployment.secret_references[setting] = secrets[0].removeprefix("key-vault-secret:")
    return deployment


KV_SECRET = "Microsoft.KeyVault/vaults/secrets"
BICEP_TABLE = "Microsoft.Storage/storageAccounts/tableServices/tables"
BICEP_SCOPE_KINDS = {
    "Microsoft.Storage/storageAccounts": "storage-account",
    "Microsoft.Storage/storageAccounts/blobServices/containers": "container",
    "Microsoft.Storage/storageAccounts/queueServices/queues": "queue",
    BICEP_TABLE: "table",
    "Microsoft.KeyVault/vaults": "key-vault",
    KV_SECRET: "key-vault-secret",
    "Microsoft.Insights/components": "application-insights",
}
NAMED_SCOPE_KINDS = {"container", "queue", "table", "key-vault-secret"}


def account_scope(account: str) -> str:
    """A whole storage account as a grant scope: "storage-account" for the main one (its Reader is the
    one justified broad grant), "storage-account:<account>" for another, which none justifies."""
    return "storage-account" if account == MAIN_ACCOUNT else f"storage-account:{account}"


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def bicep_body(resource: dict) -> tuple[dict | None, dict | None, dict]:
    """(loop, condition, body) of a parsed resource: pycep nests the body under loops and conditions."""
    config, loop, condition = resource["config"], None, None
    if "loop_type" in config:
        loop, config = config["loop_type"], config["config"]
    if set(config) == {"condition", "config"}:
        condition, config = config["condition"], config["config"]
    return loop, condition, config


class BicepEvaluator:
    """Evaluates the few Bicep expressions role assignments use, as if every optional parameter were
    set (so that a conditional grant counts): variables, loop items, property and index access,
    ?:, !, empty(), subscriptionResourceId(); a parameter evaluates to "${snake_name}"."""

    def __init__(self, parsed: dict) -> None:
        self.variables = {name: spec["value"] for name, spec in parsed.get("variables", {}).items()}
        self.parameters = parsed.get("parameters", {})
        self.resources = parsed.get("resources", {})

    def __call__(self, expr, env: dict):
        if isinstance(expr, str):
            if expr in env:
                return env[expr]
            if expr in self.variables:
                return self(self.variables[expr], env)
            if expr in self.parameters:
                return "${" + snake_case(expr) + "}"
            return expr.strip("'")
        if isinstance(expr, list):
            return [self(item, env) for item in expr]
        if not isinstance(expr, dict):
            return expr
        if "operator" in expr:
            operator = expr["operator"]
            operands = operator["operands"]
            if operator["type"] == "property_accessor":
                base = self(operands["operand_1"], env)
                key = operands["operand_2"]
                return base.get(key) if isinstance(base, dict) and isinstance(key, str) else f"{base}.{key}"
            if operator["type"] == "index_accessor":
                base, key = self(operands["operand_1"], env), self(operands["operand_2"], env)
                return base[key] if isinstance(base, (dict, list)) else f"{base}[{key}]"
            if operator["type"] == "conditional":
                chosen = "true_value" if self(operands["condition"], env) else "false_value"
                return self(operands[chosen], env)
            if operator["type"] == "not":
                return not self(operands["bool_value"], env)
        if "function" in expr:
            function = expr["function"]
            if function["type"] == "empty":
                value = self(function["parameters"]["item_to_test"], env)
                return not value or value == "${}"  # a parameter counts as set
            if function["type"] == "subscription_resource_id":
                return self(function["parameters"]["resource_name_1"], env)
            if function["type"] == "resource_group":
                return "resource-group"
            if function["type"] == "subscription":
                return "subscription"
            return function["type"]
        return {key.strip("'"): self(value, env) for key, value in expr.items()}

    def loop_items(self, loop: dict | None, env: dict):
        """The environments of a resource's loop iterations (one, empty, without a loop)."""
        if loop is None:
            yield dict(env)
            return
        detail = loop["detail"]
        for index, item in enumerate(self(detail["array_name"], env)):
            index_variable = {detail["index_name"]: index} if "index_name" in detail else {}
            yield {**env, detail["item_name"]: item, **index_variable}

    def scope(self, expr, env: dict) -> str:
        """A role assignment's scope as a grant scope string ("container:archive-state", ...)."""
        if expr is None:
            return "resource-group"  # an extension resource without scope: the deployment's resource group
        symbol, index = expr, None
        if isinstance(expr, dict) and expr.get("operator", {}).get("type") == "index_accessor":
            operands = expr["operator"]["operands"]
            symbol, index = operands["operand_1"], self(operands["operand_2"], env)
        if isinstance(expr, dict) and "function" in expr:
            return self(expr, env)
        if not isinstance(symbol, str) or symbol not in self.resources:
            return f"unknown:{json.dumps(expr)}"
        resource = self.resources[symbol]
        kind = BICEP_SCOPE_KINDS.get(resource["type"], resource["type"])
        if kind == "storage-account":
            return account_scope(ACCOUNT_NAMES.get(symbol, symbol))
        if kind not in NAMED_SCOPE_KINDS:
            return kind
        loop, _, body = bicep_body(resource)
        iterations = list(self.loop_items(loop, {}))
        name = self(body["name"], iterations[index if index is not None else 0])
        return f"{kind}:{name}"


def bicep_grants(parsed: dict) -> set[tuple[str, str, str]]:
    evaluate = BicepEvaluator(parsed)
    custom_roles = bicep_custom_roles(parsed)
    grants = set()
    for resource in parsed.get("resources", {}).values():
        if resource["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        loop, condition, body = bicep_body(resource)
        for env in evaluate.loop_items(loop, {}):
            if condition is not None and not evaluate(condition, env):
                continue
            properties = body["properties"]
            principal = "identity" if "identity" in strings_in(properties["principalId"]) \
                else "deployer" if "deployer" in json.dumps(properties["principalId"]) \
                else json.dumps(properties["principalId"])
            role = evaluate(properties["roleDefinitionId"], env)
            # a custom role defined in the template: subscriptionResourceId(..., <symbol>.name) or <symbol>.id
            defined = re.fullmatch(r"(\w+)\.(?:name|id)", role) if isinstance(role, str) else None
            if defined and defined.group(1) in custom_roles:
                role_name = custom_role_name(custom_roles[defined.group(1)]["permissions"])
            else:
                role_name = ROLE_NAMES_BY_ID.get(role, f"role {role}")
            if "condition" in properties:
                role_name = with_condition(role_name, properties.get("conditionVersion"),
                                           evaluate(properties["condition"], env))
            grants.add((principal, role_name, with_host_id(evaluate.scope(body.get("scope"), env))))
    return grants


BICEP_ROLE_DEFINITION = "Microsoft.Authorization/roleDefinitions"


def bicep_custom_roles(parsed: dict) -> dict[str, dict]:
    """Symbol -> the custom role it defines: its permissions (one block), assignable scopes, role name."""
    evaluate = BicepEvaluator(parsed)
    roles = {}
    for symbol, resource in parsed.get("resources", {}).items():
        if resource["type"] != BICEP_ROLE_DEFINITION:
            continue
        _, _, body = bicep_body(resource)
        properties = body["properties"]
        (permissions,) = evaluate(properties["permissions"], {})
        roles[symbol] = {
            "permissions": {key: list(permissions.get(key, [])) for key in
                            ("actions", "notActions", "dataActions", "notDataActions")},
            "assignable scopes": evaluate(properties["assignableScopes"], {}),
            "name": properties["roleName"], "type": properties.get("type"),
        }
    return roles


# --- Reading the parsed Terraform ----------------------------------------------------------------

_INTERPOLATION = re.compile(r"^\$\{(.*)\}$", re.DOTALL)


def tf_literal(value):
    """'"text"' -> 'text'; other values (expressions "${...}", numbers, bools) unchanged."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"' and "${" not in value:
        return value[1:-1]
    return value


def _tf_arguments(text: str) -> list[str]:
    """The top-level comma-separated parts of a function's arguments ("a, [b, c]" -> ["a", "[b, c]"])."""
    parts, depth, quote, start = [], 0, False, 0
    for i, char in enumerate(text):
        if char == '"' and (i == 0 or text[i - 1] != "\\"):
            quote = not quote
        elif not quote and char in "([{":
            depth += 1
        elif not quote and char in ")]}":
            depth -= 1
        elif not quote and char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


def _tf_item(item, local_values: dict):
    """A list item as its value: '"x"' -> 'x', "${local.name}" -> that local's value when it is a literal
    or a string template ('"a-${local.b}"' -> 'a-${local.b}')."""
    value = tf_literal(item)
    if isinstance(value, str) and (match := re.fullmatch(r"\$\{local\.(\w+)\}", value.strip())):
        named = tf_literal(local_values.get(match.group(1)))
        if isinstance(named, str) and "${" not in named:
            return named
        if isinstance(named, str) and len(named) >= 2 and named[0] == named[-1] == '"':
            return named[1:-1]
    return value


def tf_list(expression, local_values: dict) -> list:
    """The items of a list-valued Terraform expression: a literal list, local.<name>, toset() or
    concat() of these, or [for x in <list> : x if <condition>], whose condition counts as true (as
    if every optional item were given, as count and BicepEvaluator do). An item that is a local
    holding a literal is that literal."""
    if isinstance(expression, list):
        return [_tf_item(item, local_values) for item in expression]
    text = expression.strip()
    if match := _INTERPOLATION.match(text):
        text = match.group(1).strip()
    if match := re.fullmatch(r"local\.(\w+)", text):
        return tf_list(local_values[match.group(1)], local_values)
    if match := re.fullmatch(r"(?:toset|concat)\((.*)\)", text, re.DOTALL):
        return [item for part in _tf_arguments(match.group(1)) for item in tf_list(part, local_values)]
    if match := re.fullmatch(r"\[for (\w+) in (.+?) : \1(?: if .+)?\]", text, re.DOTALL):
        return tf_list(match.group(2), local_values)
    if match := re.fullmatch(r"\[(.*)\]", text, re.DOTALL):
        return [_tf_item(item, local_values) for item in _tf_arguments(match.group(1))]
    raise AssertionError(f"not a list expression this test can read: {expression!r}")


def tf_blocks(parsed: dict, kind: str):
    """(type, name, body) of every resource (or data source) block."""
    for block in parsed.get(kind, []):
        for block_type, named in block.items():
            for block_name, body in named.items():
                yield tf_literal(block_type), tf_literal(block_name), body


def terraform_deployment(parsed: dict) -> Deployment:
    local_values = {
        tf_literal(k): v for block in parsed.get("locals", []) for k, v in block.items() if not k.startswith("__")
    }
    variables = {tf_literal(k): v for block in parsed.get("variable", []) for k, v in block.items()}

    def resolve(value):
        seen = set()
        while True:
            value = tf_literal(value)
            match = _INTERPOLATION.match(value) if isinstance(value, str) else None
            reference = re.fullmatch(r"local\.(\w+)", match.group(1).strip()) if match else None
            if not reference or reference.group(1) in seen or reference.group(1) not in local_values:
                return value
            seen.add(reference.group(1))
            value = local_values[reference.group(1)]

    resources = list(tf_blocks(parsed, "resource"))

    def names_of(body: dict, resource_type: str) -> set[str]:
        name = tf_literal(body["name"])
        if name in ("${each.value}", "${each.key}"):
            for_each = re.fullmatch(r"\$\{toset\((.+)\)\}", body["for_each"])
            assert for_each, f"{resource_type}: for_each must be toset(<list>)"
            return {resolve(item) for item in resolve("${" + for_each.group(1) + "}")}
        return {resolve(name)}

    def names(resource_type: str) -> set[str]:
        """Names of the resource blocks of a type, or of the azapi_resource blocks of an ARM type."""
        found = set()
        for block_type, _, body in resources:
            if block_type == resource_type or (
                    block_type == "azapi_resource" and tf_literal(body["type"]).startswith(resource_type + "@")):
                found |= names_of(body, resource_type)
        return found

    deployment = Deployment(
        "terraform", queues={with_host_id(q) for q in names("azurerm_storage_queue")},
        containers=names("azurerm_storage_container"),
        # as ARM resources through azapi: azurerm_storage_table needs Shared Key (test_security_properties)
        tables=names("azurerm_storage_table") | names(BICEP_TABLE),
    )
    # App settings live in the site's siteConfig only: no other resource may set them unseen.
    assert not [t for t, _, body in resources if t in ("azurerm_function_app_flex_consumption", "azapi_update_resource")
                or "Microsoft.Web/sites/config" in str(body.get("type", ""))]
    sites = [body for block_type, _, body in resources
             if block_type == "azapi_resource" and tf_literal(body["type"]).startswith("Microsoft.Web/sites@")]
    assert len(sites) == 1, "one function app (azapi_resource Microsoft.Web/sites) expected"
    app_settings = sites[0]["body"]["properties"]["siteConfig"]["appSettings"]
    loop = re.fullmatch(r"\$\{\[for (\w+), (\w+) in local\.(\w+) : .*\]\}", app_settings, re.DOTALL) \
        if isinstance(app_settings, str) else None
    if loop:
        settings = local_values[loop.group(3)]
    else:
        settings = {tf_literal(entry["name"]): entry["value"] for entry in app_settings}
    deployment.settings = {tf_literal(name): resolve(value) for name, value in settings.items()}
    for name, value in settings.items():
        referenced = set(re.findall(r"\bvar\.(\w+)", str(value)))
        if len(referenced) == 1 and "default" in variables.get(next(iter(referenced)), {}):
            deployment.setting_defaults[tf_literal(name)] = tf_literal(variables[next(iter(referenced))]["default"])
    deployment.grants = terraform_grants(parsed)
    for block_type, _, body in resources:
        if block_type == "azurerm_storage_container":
            account = re.search(r"azurerm_storage_account\.(\w+)", body["storage_account_id"]).group(1)
            for name in names_of(body, block_type):
                deployment.container_accounts[name] = ACCOUNT_NAMES.get(account, account)
    for name, value in settings.items():
        name = tf_literal(name)
        for suffix, service, accounts in (("__blobServiceUri", "blob", deployment.connection_accounts),
                                          ("__queueServiceUri", "queue", deployment.connection_queue_accounts)):
            # the first account named: the optional one of a conditional (var.x ? <optional> : <main>)
            found = re.search(rf"azurerm_storage_account\.(\w+)(?:\[0\])?\.primary_{service}_endpoint", str(value))
            if name.endswith(suffix) and found:
                accounts[name.removesuffix(suffix)] = ACCOUNT_NAMES.get(found.group(1), found.group(1))
    azapi = {name: body for block_type, name, body in resources if block_type == "azapi_resource"}
    for setting in SECRET_REFERENCES:
        value = str(settings.get(setting, ""))
        references = re.findall(r'(azapi_resource\.\w+(?:\["[^"]+"\])?)\.output', value)
        secrets = [scope.removeprefix("key-vault-secret:") for r in references
                   if (scope := terraform_scope("${" + r + ".id}", azapi)).startswith("key-vault-secret:")]
        secrets += ["${" + v + "}" for v in re.findall(r"\$\{var\.(\w+)\}", value)]
        if len(secrets) == 1:
            deployment.secret_references[setting] = secrets[0]
    return deployment


def terraform_scope(scope: str, azapi: dict[str, dict]) -> str:
    """A role assignment's scope expression, for_each keys already substituted, as a grant scope."""
    if len(scope) >= 2 and scope[0] == scope[-1] == '"':  # a template string: "${a.id}/x/${b}"
        scope = scope[1:-1]
    account = r"\$\{azurerm_storage_account\.\w+(?:\[0\])?\.id\}"  # any account, counted or not
    named = {
        account + r"/blobServices/default/containers/(.+)": "container",
        account + r"/queueServices/default/queues/(.+)": "queue",
        account + r"/tableServices/default/tables/(.+)": "table",
        r"\$\{azurerm_key_vault\.main\.id\}/secrets/(.+)": "key-vault-secret",
    }
    for pattern, kind in named.items():
        if match := re.fullmatch(pattern, scope):
            # "${azurerm_storage_container.main["x"].name}", "${azapi_resource.table["x"].name}" -> x;
            # "${var.name}" -> "${name}"
            name = re.sub(r'\$\{(?:azurerm_storage_(?:container|queue|table)\.main|azapi_resource\.\w+)'
                          r'\["([^"]+)"\]\.name\}', r"\1", match.group(1))
            return f"{kind}:{re.sub(r'\$\{var\.(\w+)\}', r'${\1}', name)}"
    if whole_account := re.fullmatch(r"\$\{azurerm_storage_account\.(\w+)(?:\[0\])?\.id\}", scope):
        return account_scope(ACCOUNT_NAMES.get(whole_account.group(1), whole_account.group(1)))
    whole = {
        "${azurerm_key_vault.main.id}": "key-vault",
        "${azurerm_application_insights.main.id}": "application-insights",
        "${azurerm_resource_group.main.id}": "resource-group",
    }
    if scope in whole:
        return whole[scope]
    if match := re.fullmatch(r'\$\{azapi_resource\.(\w+)(?:\["([^"]+)"\])?\.id\}', scope):
        body = azapi.get(match.group(1), {})
        name = tf_literal(body.get("name", ""))
        if name == "${each.key}" and match.group(2) is not None:  # for_each over the names
            name = match.group(2)
        if tf_literal(body.get("type", "")).startswith(KV_SECRET + "@"):
            return f"key-vault-secret:{name}"
    if "subscription" in scope and "resourceGroups" not in scope and "resource_group" not in scope:
        return "subscription"
    return f"unknown:{scope}"


def terraform_grants(parsed: dict) -> set[tuple[str, str, str]]:
    local_values = {tf_literal(k): v for block in parsed.get("locals", []) for k, v in block.items()
                    if not k.startswith("__")}
    azapi = {name: body for block_type, name, body in tf_blocks(parsed, "resource") if block_type == "azapi_resource"}

    def iterations(body: dict):
        """(each.key, each.value) of every instance; count counts as one (its optional grant is set)."""
        for_each = body.get("for_each")
        if for_each is None:
            yield None, None
            return
        reference = re.fullmatch(r"\$\{(?:toset\()?local\.(\w+)\)?\}", for_each)
        assert reference, f"role assignment for_each must be a local or toset(<local>): {for_each}"
        values = local_values[reference.group(1)]
        pairs = values.items() if isinstance(values, dict) else ((v, v) for v in tf_list(values, local_values))
        for key, value in pairs:
            yield tf_literal(key), tf_literal(value)

    def each(text: str, key: str | None, value: str | None) -> str:
        """each.key and each.value substituted: "${each.value}" -> value, "x[each.key]" -> 'x["key"]'."""
        if text == "${each.value}":
            return value or ""
        return text.replace("[each.key]", f'["{key}"]').replace("${each.key}", key or "")

    # A container of its own resource (not the for_each of main.tf), as "${azurerm_storage_container.<x>.name}"
    single_containers = {name: tf_literal(body["name"]) for block_type, name, body in tf_blocks(parsed, "resource")
                         if block_type == "azurerm_storage_container" and "for_each" not in body}

    def container_names(scope: str) -> str:
        def name(match: re.Match) -> str:
            value = single_containers[match.group(1)]
            local = re.fullmatch(r"\$\{local\.(\w+)\}", value)
            return tf_literal(local_values[local.group(1)]) if local else value
        return re.sub(r"\$\{azurerm_storage_container\.(\w+)(?:\[0\])?\.name\}", name, scope)

    custom_roles = terraform_custom_roles(parsed)
    grants = set()
    for block_type, _, body in tf_blocks(parsed, "resource"):
        if block_type != "azurerm_role_assignment":
            continue
        principal = body["principal_id"]
        principal = "identity" if "azurerm_user_assigned_identity.app." in principal \
            else "deployer" if "azurerm_client_config.current.object_id" in principal else principal
        for key, value in iterations(body):
            defined = re.fullmatch(r"\$\{azurerm_role_definition\.(\w+)(?:\[0\])?\.role_definition_resource_id\}",
                                   str(body.get("role_definition_id", "")))
            if "role_definition_name" in body:
                role = tf_literal(each(body["role_definition_name"], key, value))
            elif defined:
                role = custom_role_name(custom_roles[defined.group(1)]["permissions"])
            else:
                guid = tf_literal(body["role_definition_id"]).rsplit("/", 1)[-1]
                role = ROLE_NAMES_BY_ID.get(guid, f"role {guid}")
            if "condition" in body:  # a literal, or a local holding one (a heredoc)
                condition = tf_literal(body["condition"])
                local = re.fullmatch(r"\$\{local\.(\w+)\}", condition)
                role = with_condition(role, tf_literal(body.get("condition_version")),
                                      tf_literal(local_values[local.group(1)]) if local else condition)
            scope = container_names(each(body["scope"], key, value))
            grants.add((principal, role, with_host_id(terraform_scope(scope, azapi))))
    return grants


def terraform_custom_roles(parsed: dict) -> dict[str, dict]:
    """azurerm_role_definition name -> the custom role it defines, as bicep_custom_roles writes it."""
    local_values = {tf_literal(k): v for block in parsed.get("locals", []) for k, v in block.items()
                    if not k.startswith("__")}
    keys = {"actions": "actions", "not_actions": "notActions", "data_actions": "dataActions",
            "not_data_actions": "notDataActions"}
    roles = {}
    for block_type, name, body in tf_blocks(parsed, "resource"):
        if block_type != "azurerm_role_definition":
            continue
        (permissions,) = body["permissions"]
        roles[name] = {
            "permissions": {key: tf_list(permissions.get(hcl, []), local_values) for hcl, key in keys.items()},
            "assignable scopes": [{"${azurerm_resource_group.main.id}": "resource-group"}.get(s, s)
                                  for s in body.get("assignable_scopes", [])],
            "name": tf_literal(body["name"]), "scope": body["scope"],
        }
    return roles


# --- The tests -----------------------------------------------------------------------------------


def test_the_exception_lists_name_real_settings():
    # An entry for a setting that no longer exists would hide nothing, but would mislead.
    assert set(NOT_DEPLOYED) <= set(code_settings())
    assert not set(PLATFORM_SETTINGS) & set(code_settings())
    assert code_queues() >= {"listing", "items", "transcripts", "listing-poison", "items-poison", "transcripts-poison"}
    assert code_tables() == {"archiveledger", "archivedeliveries", "archiverecords"}
    assert set(table_settings()) == {"LEDGER_TABLE", "DELIVERY_TABLE", "RECORD_TABLE"}


def test_bicep_creates_and_sets_exactly_what_the_code_uses(bicep_json):
    assert consistency_problems(bicep_deployment(bicep_json)) == []


def test_terraform_creates_and_sets_exactly_what_the_code_uses(terraform_json):
    assert consistency_problems(terraform_deployment(terraform_json)) == []


def test_both_templates_deploy_the_same(bicep_json, terraform_json):
    bicep, terraform = bicep_deployment(bicep_json), terraform_deployment(terraform_json)
    assert template_differences(bicep, terraform) == []


# --- Role assignments: least privilege, the same in both templates -------------------------------


def _table(grants) -> list[str]:
    return [f"{principal}: {role} on {scope}" for principal, role, scope in sorted(grants)]


@pytest.mark.parametrize("template", ["bicep", "terraform"])
def test_every_grant_is_as_narrow_as_azure_allows(template, bicep_json, terraform_json):
    deployment = bicep_deployment(bicep_json) if template == "bicep" else terraform_deployment(terraform_json)
    assert grant_problems(deployment.grants) == []


@pytest.mark.parametrize("template", ["bicep", "terraform"])
def test_the_grants_are_exactly_what_the_code_and_the_host_need(template, bicep_json, terraform_json):
    deployment = bicep_deployment(bicep_json) if template == "bicep" else terraform_deployment(terraform_json)
    # every Key Vault reference names one secret, and it is the one expected
    assert deployment.secret_references == SECRET_REFERENCES
    assert _table(deployment.grants) == _table(expected_grants(deployment))


def test_both_templates_grant_the_same_roles_on_the_same_scopes(bicep_json, terraform_json):
    bicep, terraform = bicep_deployment(bicep_json), terraform_deployment(terraform_json)
    assert bicep.grants and _table(bicep.grants) == _table(terraform.grants)


def test_every_container_queue_and_table_has_a_role_and_no_more(bicep_json, terraform_json):
    for deployment in (bicep_deployment(bicep_json), terraform_deployment(terraform_json)):
        per_scope: dict[str, list[str]] = {}
        for _, role, scope in deployment.grants:
            per_scope.setdefault(scope, []).append(role)
        assert {s: r for s, r in per_scope.items() if len(r) > 1} == {}, deployment.name
        assert {f"container:{c}" for c in deployment.containers} | {f"queue:{q}" for q in deployment.queues} \
            | {f"table:{t}" for t in deployment.tables} <= set(per_scope), deployment.name
        assert deployment.tables, deployment.name


def test_the_bicep_role_guids_are_the_builtin_roles(bicep_json):
    variables = {name: spec["value"] for name, spec in bicep_json["variables"].items()}
    guids = {name: value for name, value in variables.items()
             if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", value)}
    assert guids and all(guid in ROLE_NAMES_BY_ID for guid in guids.values()), guids
    # the variable says which role it is: storageBlobDataOwner is Storage Blob Data Owner
    assert {name: ROLE_NAMES_BY_ID[guid].replace(" ", "").lower() for name, guid in guids.items()} == \
        {name: name.lower() for name in guids}


def _bicep_role_assignment(parsed: dict, symbol: str) -> dict:
    return bicep_body(parsed["resources"][symbol])[2]


def test_a_broad_grant_in_bicep_is_reported(bicep_json):
    changed = copy.deepcopy(bicep_json)
    # the password secret's role moved to the whole vault...
    changed["resources"]["telemessagePasswordRole"]["config"]["scope"] = "vault"
    # ...the account-level Reader made Storage Account Contributor...
    changed["variables"]["reader"]["value"] = BUILTIN_ROLES["Storage Account Contributor"]
    # ...and Owner on the records container
    changed["variables"]["containerRoles"]["value"]["'archive-records'"] = "storageBlobDataOwner"
    assert grant_problems(bicep_grants(changed)) == [
        "broad scope: Key Vault Secrets User on key-vault for identity "
        "(grant it on the container, queue, table or secret it is for)",
        "broad role: Storage Account Contributor on storage-account for identity",
        "broad scope: Storage Account Contributor on storage-account for identity "
        "(grant it on the container, queue, table or secret it is for)",
        "Storage Blob Data Owner outside the host's containers: "
        "Storage Blob Data Owner on container:archive-records for identity",
    ]


def test_a_grant_without_scope_in_bicep_is_at_the_resource_group(bicep_json):
    changed = copy.deepcopy(bicep_json)
    del _bicep_role_assignment(changed, "metricsPublisherRole")["scope"]
    assert ("identity", "Monitoring Metrics Publisher", "resource-group") in bicep_grants(changed)
    assert "broad scope: Monitoring Metrics Publisher on resource-group for identity " \
        "(grant it on the container, queue, table or secret it is for)" in grant_problems(bicep_grants(changed))


def test_a_broad_or_foreign_grant_in_terraform_is_reported(terraform_json):
    changed = copy.deepcopy(terraform_json)
    changed["resource"].append({'"azurerm_role_assignment"': {'"deployer_secrets_officer"': {
        "scope": "${azurerm_key_vault.main.id}",
        "role_definition_name": '"Key Vault Secrets Officer"',
        "principal_id": "${data.azurerm_client_config.current.object_id}",
    }}})
    for block in changed["locals"]:
        if "container_roles" in block:
            block["container_roles"]['"archive-state"'] = '"Storage Blob Data Owner"'
    problems = grant_problems(terraform_grants(changed))
    assert problems == [
        "broad role: Key Vault Secrets Officer on key-vault for deployer",
        "broad scope: Key Vault Secrets Officer on key-vault for deployer "
        "(grant it on the container, queue, table or secret it is for)",
        "a principal other than the app's identity holds a role: Key Vault Secrets Officer on key-vault for deployer",
        "Storage Blob Data Owner outside the host's containers: "
        "Storage Blob Data Owner on container:archive-state for identity",
    ]


def test_a_grant_only_in_one_template_is_reported(bicep_json, terraform_json):
    changed = copy.deepcopy(terraform_json)
    changed["resource"] = [block for block in changed["resource"]
                           if '"storage_reader"' not in block.get('"azurerm_role_assignment"', {})]
    bicep, terraform = bicep_deployment(bicep_json), terraform_deployment(changed)
    assert template_differences(bicep, terraform) == [
        "grants: only in Bicep [('identity', 'Reader', 'storage-account')], only in Terraform []",
    ]


def test_a_queue_renamed_in_bicep_only_is_reported_exactly(bicep_json, terraform_json):
    changed = copy.deepcopy(bicep_json)
    queues = changed["variables"]["queueNames"]["value"]
    queues[queues.index("items-poison")] = "item-poison"
    bicep = bicep_deployment(changed)
    assert consistency_problems(bicep) == [
        "bicep: queue 'items-poison' is used by the code but not created",
        "bicep: queue 'item-poison' is created but the code does not use it",
    ]
    assert template_differences(bicep, terraform_deployment(terraform_json)) == [
        "queues: only in Bicep ['item-poison'], only in Terraform ['items-poison']",
        "grants: only in Bicep [('identity', 'Storage Queue Data Contributor', 'queue:item-poison')], "
        "only in Terraform [('identity', 'Storage Queue Data Contributor', 'queue:items-poison')]",
    ]


def test_a_setting_renamed_in_terraform_only_is_reported_exactly(bicep_json, terraform_json):
    changed = copy.deepcopy(terraform_json)
    for block in changed["locals"]:
        if "app_settings" in block:
            block["app_settings"]["GRAPH_CLOUDS"] = block["app_settings"].pop("GRAPH_CLOUD")
    terraform = terraform_deployment(changed)
    assert consistency_problems(terraform) == [
        "terraform: app setting 'GRAPH_CLOUD' is used by the code but not created",
        "terraform: app setting 'GRAPH_CLOUDS' is created but the code does not use it",
    ]
    assert template_differences(bicep_deployment(bicep_json), terraform) == [
        "app settings: only in Bicep ['GRAPH_CLOUD'], only in Terraform ['GRAPH_CLOUDS']",
    ]


def test_a_container_setting_pointing_nowhere_is_reported(terraform_json):
    changed = copy.deepcopy(terraform_json)
    for block in changed["locals"]:
        if "records_container_name" in block:
            block["records_container_name"] = '"archive-record"'
    # The container and the setting both follow the local: renamed together, only the code notices.
    assert consistency_problems(terraform_deployment(changed)) == [
        "terraform: container 'archive-records' is used by the code but not created",
        "terraform: container 'archive-record' is created but the code does not use it",
    ]


def test_a_table_role_on_the_account_in_bicep_is_reported(bicep_json):
    changed = copy.deepcopy(bicep_json)
    _bicep_role_assignment(changed, "tableRoleAssignments")["scope"] = "storage"
    grants = bicep_grants(changed)
    assert ("identity", TABLE_ROLE, "storage-account") in grants
    assert not {("identity", TABLE_ROLE, f"table:{t}") for t in code_tables()} & grants
    assert grant_problems(grants) == [
        f"broad scope: {TABLE_ROLE} on storage-account for identity "
        "(grant it on the container, queue, table or secret it is for)",
    ]


def test_a_table_role_on_the_account_in_terraform_is_reported(terraform_json):
    changed = copy.deepcopy(terraform_json)
    for block in changed["resource"]:
        if '"table"' in block.get('"azurerm_role_assignment"', {}):
            block['"azurerm_role_assignment"']['"table"']["scope"] = "${azurerm_storage_account.main.id}"
    assert grant_problems(terraform_grants(changed)) == [
        f"broad scope: {TABLE_ROLE} on storage-account for identity "
        "(grant it on the container, queue, table or secret it is for)",
    ]


def test_a_table_renamed_in_terraform_only_is_reported_exactly(bicep_json, terraform_json):
    changed = copy.deepcopy(terraform_json)
    for block in changed["locals"]:
        if "ledger_table_name" in block:
            block["ledger_table_name"] = '"archiveledgr"'
    ledger = Settings.model_fields["ledger_table"].default
    terraform = terraform_deployment(changed)
    # The table, its role and LEDGER_TABLE follow the local together: the code and Bicep notice.
    assert consistency_problems(terraform) == [
        f"terraform: table {ledger!r} is used by the code but not created",
        "terraform: table 'archiveledgr' is created but the code does not use it",
    ]
    assert template_differences(bicep_deployment(bicep_json), terraform) == [
        f"tables: only in Bicep [{ledger!r}], only in Terraform ['archiveledgr']",
        f"grants: only in Bicep [('identity', {TABLE_ROLE!r}, 'table:{ledger}')], "
        f"only in Terraform [('identity', {TABLE_ROLE!r}, 'table:archiveledgr')]",
    ]


@pytest.mark.parametrize("setting", ["LEDGER_TABLE", "DELIVERY_TABLE"])
def test_a_table_setting_pointing_nowhere_is_reported(bicep_json, setting):
    changed = copy.deepcopy(bicep_json)
    changed["variables"]["appSettings"]["value"][setting] = "archiveledgr"
    assert consistency_problems(bicep_deployment(changed)) == [
        f"bicep: {setting}='archiveledgr' names no table the template creates",
    ]


def _code_default(setting: str) -> object:
    default = Settings.model_fields[code_settings()[setting]].default
    return default.get_secret_value() if hasattr(default, "get_secret_value") else default


def _same(template_default: object, code_default: object) -> bool:
    if code_default is None:
        return template_default == ""
    if isinstance(code_default, bool) or isinstance(template_default, bool):
        return str(template_default).lower() == str(code_default).lower()
    if isinstance(code_default, (int, float)):
        return float(template_default) == float(code_default)
    return template_default == code_default


@pytest.mark.parametrize("template", ["bicep", "terraform"])
def test_parameter_defaults_are_the_code_defaults(template, bicep_json, terraform_json):
    deployment = bicep_deployment(bicep_json) if template == "bicep" else terraform_deployment(terraform_json)
    # A switch (a bool parameter) that chooses a setting which is not a bool is not the parameter
    # behind that setting: EmlDrops__blobServiceUri names the drop account or the main one by emlDropZone.
    compared = {name: default for name, default in deployment.setting_defaults.items() if name in code_settings()
                and not (isinstance(default, bool) and not isinstance(_code_default(name), bool))}
    assert len(compared) >= 25, sorted(compared)  # every tunable setting has a parameter
    different = {name: (default, _code_default(name)) for name, default in compared.items()
                 if not _same(default, _code_default(name))}
    assert different == {}


def test_secrets_are_key_vault_references(bicep_json, terraform_json):
    for deployment in (bicep_deployment(bicep_json), terraform_deployment(terraform_json)):
        for setting in ("TELEMESSAGE_USERNAME", "TELEMESSAGE_PASSWORD"):
            value = deployment.settings[setting]
            assert isinstance(value, str) and "@Microsoft.KeyVault(SecretUri=" in value, (deployment.name, setting)
        for setting in ("GRAPH_CERTIFICATE", *OPTIONAL_SECRET_SETTINGS):
            reference = json.dumps(deployment.settings[setting])
            assert "@Microsoft.KeyVault(SecretUri=" in reference, (deployment.name, setting)


def _camel_case(setting: str) -> str:
    first, *rest = setting.lower().split("_")
    return first + "".join(word.title() for word in rest)


def test_the_bicep_whatsapp_secrets_exist_only_when_given(bicep_json):
    # A deployment without the WhatsApp source writes, grants and references none of its secrets:
    # each secret and its grant are conditional on its own @secure() parameter, default empty, and
    # its setting is '' unless that parameter is given.
    parameters, resources = bicep_json["parameters"], bicep_json["resources"]
    settings = bicep_json["variables"]["appSettings"]["value"]
    for setting, secret in OPTIONAL_SECRET_SETTINGS.items():
        parameter = _camel_case(setting)
        spec = parameters[parameter]
        assert spec["default"] == "" and {"type": "secure"} in spec["decorators"], parameter
        given = {"operator": {"type": "not", "operands": {"bool_value": {"function": {
            "type": "empty", "parameters": {"item_to_test": parameter}}}}}}
        (symbol,) = [n for n, r in resources.items() if r["type"] == KV_SECRET and bicep_body(r)[2]["name"] == secret]
        _, condition, body = bicep_body(resources[symbol])
        assert condition == given and body["properties"]["value"] == parameter, symbol
        grants = [bicep_body(r)[1] for r in resources.values()
                  if r["type"] == "Microsoft.Authorization/roleAssignments" and bicep_body(r)[2].get("scope") == symbol]
        assert grants == [given], symbol
        value = settings[setting]["operator"]
        assert value["type"] == "conditional", setting
        assert value["operands"]["condition"] == given["operator"]["operands"]["bool_value"], setting
        assert value["operands"]["true_value"] == "", setting
        assert value["operands"]["false_value"] == f"@Microsoft.KeyVault(SecretUri=${{{symbol}!.properties.secretUri}})"


def test_the_terraform_whatsapp_secrets_exist_only_when_given(terraform_json):
    # The same in Terraform: one for_each (local.secret_names) writes the secrets and grants them;
    # it holds the TeleMessage ones always and each WhatsApp one only when its variable is not empty.
    local_values = {tf_literal(k): v for block in terraform_json["locals"] for k, v in block.items()}
    variables = {tf_literal(k): v for block in terraform_json["variable"] for k, v in block.items()}
    resources = {(t, n): body for t, n, body in tf_blocks(terraform_json, "resource")}
    optional = list(OPTIONAL_SECRET_SETTINGS.values())
    assert tf_list(local_values["optional_secret_names"], local_values) == optional
    assert set(tf_list(local_values["required_secret_names"], local_values)) == {
        secret for setting, secret in SECRET_REFERENCES.items() if setting.startswith("TELEMESSAGE_")}
    assert local_values["secret_names"] == (
        "${concat(local.required_secret_names, [for name in local.optional_secret_names : name "
        'if nonsensitive(local.secret_values[name] != "")])}')
    assert resources["azapi_resource", "secret"]["for_each"] == "${toset(local.secret_names)}"
    assert resources["azurerm_role_assignment", "secrets_user"]["for_each"] == "${toset(local.secret_names)}"
    app_settings = next(block["app_settings"] for block in terraform_json["locals"] if "app_settings" in block)
    for setting, secret in OPTIONAL_SECRET_SETTINGS.items():
        variable = variables[setting.lower()]
        assert (tf_literal(variable["default"]), variable["sensitive"], variable["nullable"]) == ("", True, False)
        assert local_values["secret_values"][f'"{secret}"'] == f"${{var.{setting.lower()}}}"
        reference = f'azapi_resource.secret["{secret}"].output.properties.secretUri'
        assert app_settings[setting] == (
            f'${{contains(local.secret_names, "{secret}") ? "@Microsoft.KeyVault(SecretUri=${{{reference}}})" : ""}}')


def test_tf_list_reads_what_the_templates_write():
    local_values = {"a": ['"x"', '"y"'], "b": ['"z"'], "n": '"w"', "c": ["${local.n}"]}
    assert tf_list('${concat(local.a, [for n in local.b : n if nonsensitive(f(n, ",") != "")])}', local_values) == [
        "x", "y", "z"]
    assert tf_list("${toset(local.a)}", local_values) == ["x", "y"]
    assert tf_list('["p", "q"]', local_values) == ["p", "q"]
    assert tf_list("${toset(local.c)}", local_values) == ["w"]
    with pytest.raises(AssertionError):
        tf_list("${keys(local.c)}", local_values)


# --- Alerts: the same scheduled log alerts in both templates, on telemetry the code emits --------

# alert (its name after the prefix) -> the app setting that must be given for it to exist, or None
ALERTS = {
    "poison": None,
    "not-reconciled": None,
    "function-failures": None,
    "webhook-signature": "WHATSAPP_APP_SECRET",  # the WhatsApp source on: without it every POST is a 503
    "webhook-5xx": "WHATSAPP_APP_SECRET",
    "outbound-refused": "WHATSAPP_APP_SECRET",
}


def bicep_alerts(parsed: dict) -> dict[str, dict]:
    parameters = parsed["parameters"]
    evaluate = BicepEvaluator(parsed)
    alerts = {}
    for resource in parsed["resources"].values():
        if resource["type"] != "Microsoft.Insights/scheduledQueryRules":
            continue
        _, condition, body = bicep_body(resource)
        properties = body["properties"]
        (criterion,) = properties["criteria"]["allOf"]
        threshold = criterion["threshold"]
        given = None
        if condition is not None:  # if (<condition on a parameter>): the setting that parameter sets
            (parameter,) = {s for s in strings_in(evaluate.variables.get(condition, condition)) if s in parameters}
            given = re.sub(r"(?<!^)(?=[A-Z])", "_", parameter).upper()
        alerts[body["name"].removeprefix("${namePrefix}-")] = {
            "only with": given,
            "display name": properties["displayName"], "description": properties["description"],
            "severity": properties["severity"], "enabled": properties["enabled"],
            "frequency": properties["evaluationFrequency"], "window": properties["windowSize"],
            "auto mitigate": properties["autoMitigate"],
            "scope": [bicep_text(scope) for scope in properties["scopes"]] == ["appInsights.id"],
            "action": [bicep_text(group) for group in properties["actions"]["actionGroups"]] == ["actionGroup.id"],
            "query": criterion["query"], "aggregation": criterion["timeAggregation"],
            "measure": criterion.get("metricMeasureColumn"), "operator": criterion["operator"],
            "threshold": "${" + snake_case(threshold) + "}" if isinstance(threshold, str) else threshold,
            "failing periods": (criterion["failingPeriods"]["numberOfEvaluationPeriods"],
                                criterion["failingPeriods"]["minFailingPeriodsToAlert"]),
        }
    return alerts


def _tf_string(value) -> object:
    """A parsed HCL string literal's text ('"a \\"b\\""' -> 'a "b"'); other values unchanged."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    return value


def terraform_alerts(parsed: dict) -> dict[str, dict]:
    local_values = {tf_literal(k): v for block in parsed.get("locals", []) for k, v in block.items()}
    settings_by_secret = {secret: setting for setting, secret in SECRET_REFERENCES.items()}
    alerts = {}
    for block_type, _, body in tf_blocks(parsed, "resource"):
        if block_type != "azurerm_monitor_scheduled_query_rules_alert_v2":
            continue
        given = None
        if "count" in body:  # local.<x> ? 1 : 0, x being contains(local.secret_names, "<secret>")
            local = re.fullmatch(r"\$\{local\.(\w+) \? 1 : 0\}", body["count"]).group(1)
            secret = re.fullmatch(r'\$\{contains\(local\.secret_names, "([\w-]+)"\)\}', local_values[local]).group(1)
            given = settings_by_secret[secret]
        (criterion,) = body["criteria"]
        (failing,) = criterion["failing_periods"]
        (action,) = body["action"]
        threshold = criterion["threshold"]
        alerts[_tf_string(body["name"]).removeprefix("${var.name_prefix}-")] = {
            "only with": given,
            "display name": _tf_string(body["display_name"]), "description": _tf_string(body["description"]),
            "severity": body["severity"], "enabled": body.get("enabled", True),
            "frequency": _tf_string(body["evaluation_frequency"]), "window": _tf_string(body["window_duration"]),
            "auto mitigate": body["auto_mitigation_enabled"],
            "scope": body["scopes"] == ["${azurerm_application_insights.main.id}"],
            "action": action["action_groups"] == ["${azurerm_monitor_action_group.main.id}"],
            "query": _tf_string(criterion["query"]), "aggregation": _tf_string(criterion["time_aggregation_method"]),
            "measure": _tf_string(criterion.get("metric_measure_column")),
            "operator": _tf_string(criterion["operator"]),
            "threshold": re.sub(r"\$\{var\.(\w+)\}", r"${\1}", threshold) if isinstance(threshold, str) else threshold,
            "failing periods": (failing["number_of_evaluation_periods"],
                                failing["minimum_failing_periods_to_trigger_alert"]),
        }
    return alerts


def code_function_names() -> set[str]:
    """The functions the code defines for the host (a decorator call on a blueprint or the app): the
    host names its requests after them."""
    import ast

    names = set()
    for path in [REPO_ROOT / "function_app.py", *sorted((REPO_ROOT / "shared" / "functions").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and any(
                    isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and isinstance(d.func.value, ast.Name)
                    and d.func.value.id in ("bp", "app") for d in node.decorator_list):
                names.add(node.name)
    return names


def test_both_templates_deploy_the_same_alerts(bicep_json, terraform_json):
    bicep, terraform = bicep_alerts(bicep_json), terraform_alerts(terraform_json)
    assert {name: alert["only with"] for name, alert in bicep.items()} == ALERTS
    assert bicep == terraform
    for name, alert in bicep.items():
        assert alert["scope"] and alert["action"] and alert["enabled"], name
        assert (alert["measure"] is None) == (alert["aggregation"] == "Count"), name  # Total etc. sum a column


def test_alert_queries_use_only_names_the_code_emits(bicep_json):
    source = "\n".join(path.read_text(encoding="utf-8") for path in sorted((REPO_ROOT / "shared").rglob("*.py")))
    literals = set(re.findall(r"""["']([\w.]+)["']""", source))
    functions = code_function_names()
    assert {"schedule_archive_window", "whatsapp_webhook"} <= functions
    for name, alert in bicep_alerts(bicep_json).items():
        code, _ = kql_code(alert["query"])
        assert archiver_names(code) <= literals, (name, archiver_names(code) - literals)
        # quoted snake_case: span names, function names, attribute values (outcomes)
        assert span_names(code) <= literals | functions, (name, span_names(code) - literals - functions)
    webhook = bicep_alerts(bicep_json)
    assert '"archiver.webhook.deliveries"' in webhook["webhook-signature"]["query"]
    assert '"whatsapp_webhook"' in webhook["webhook-5xx"]["query"]
    assert '"whatsapp_outbound"' in webhook["webhook-5xx"]["query"]
    assert '"outbound_refused"' in webhook["outbound-refused"]["query"]


def test_the_cloud_parameters_offer_the_clouds_the_code_knows(bicep_json, terraform_json):
    code_clouds = set(typing.get_args(Settings.model_fields["graph_cloud"].annotation))
    decorators = bicep_json["parameters"]["graphCloud"]["decorators"]
    assert {c for d in decorators if d["type"] == "allowed" for c in d["argument"]} == code_clouds
    clouds = next(block["clouds"] for block in terraform_json["locals"] if "clouds" in block)
    assert set(clouds) == code_clouds
    assert tf_literal(clouds["usgov"]["azurerm"]) == "usgovernment"  # GCC High lives in Azure Government


def test_security_properties(bicep_json, terraform_json):
    resources = bicep_json["resources"]
    storage = resources["storage"]["config"]["properties"]
    assert (storage["allowSharedKeyAccess"], storage["allowBlobPublicAccess"], storage["minimumTlsVersion"]) == (
        False, False, "TLS1_2")
    vault = resources["vault"]["config"]["properties"]
    assert (vault["enableRbacAuthorization"], vault["enablePurgeProtection"], vault["enableSoftDelete"]) == (
        True, True, True)
    assert resources["appInsights"]["config"]["properties"]["DisableLocalAuth"] is True
    site = resources["functionApp"]["config"]["properties"]
    assert site["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.13"}
    assert site["functionAppConfig"]["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert "identity" in strings_in(site["keyVaultReferenceIdentity"])

    tf = {(block_type, name): body for block_type, name, body in tf_blocks(terraform_json, "resource")}
    account = tf["azurerm_storage_account", "main"]
    assert (account["shared_access_key_enabled"], account["allow_nested_items_to_be_public"],
            tf_literal(account["min_tls_version"])) == (False, False, "TLS1_2")
    # azurerm_storage_table reads and writes table ACLs with Shared Key only, which the account refuses.
    assert not [t for t, _ in tf if t in ("azurerm_storage_table", "azurerm_storage_table_entity")]
    key_vault = tf["azurerm_key_vault", "main"]
    assert (key_vault["rbac_authorization_enabled"], key_vault["purge_protection_enabled"]) == (True, True)
    assert tf["azurerm_application_insights", "main"]["local_authentication_disabled"] is True
    properties = tf["azapi_resource", "function_app"]["body"]["properties"]
    assert {k: tf_literal(v) for k, v in properties["functionAppConfig"]["runtime"].items()} == {
        "name": "python", "version": "3.13"}
    assert "azurerm_user_assigned_identity.app.id" in properties["keyVaultReferenceIdentity"]
    roles = {tf_literal(body["app_role_id"]) for block_type, _, body in tf_blocks(terraform_json, "resource")
             if block_type == "azuread_app_role_assignment"}
    granted = {re.search(r'app_role_ids\["([\w.]+)"\]', role).group(1) for role in roles}
    assert granted == {"Mail.ReadWrite", "User.Read.All"}


def test_every_checkov_skip_gives_a_reason():
    # checkov accepts a bare skip ("No comment provided"); the project does not.
    skip = re.compile(r"checkov:skip=([A-Z0-9_]+)(:?)(.*)")
    files = [BICEP_FILE, *sorted(TERRAFORM_DIR.glob("*.tf"))]
    skips = [(path.name, m) for path in files for line in path.read_text().splitlines() if (m := skip.search(line))]
    assert skips, "the templates have skips; the pattern must find them"
    unexplained = [f"{name}: {m.group(1)}" for name, m in skips if not m.group(2) or len(m.group(3).strip()) < 20]
    assert unexplained == []


# --- Blob triggers: Event Grid subscriptions, queues, host ID ------------------------------------
#
# Flex Consumption runs a blob trigger only with source=EventGrid: the storage account's system topic
# posts BlobCreated to the Blobs extension webhook (Functions docs, "Tutorial: Trigger Azure Functions
# on blob containers using an event subscription"):
#   https://<app host>/runtime/webhooks/blobs?functionName=Host.Functions.<function>&code=<blobs_extension key>
# The readers below write a subscription the same way for both templates, with {app host} for the
# function app's defaultHostName and {blobs_extension key} for the host's system key. Each trigger's
# container is in the account its connection's __blobServiceUri names (as if every optional part of
# the templates were on), and its subscription is on that account's system topic.

STORAGE_TOPIC_TYPE = "Microsoft.Storage.StorageAccounts"
BLOB_WEBHOOK = ("https://{{app host}}/runtime/webhooks/blobs"
                "?functionName=Host.Functions.{function}&code={{blobs_extension key}}")
# The data.api values of a BlobCreated event for a blob that is whole (Event Grid docs, "Azure Blob
# Storage as an Event Grid source"): an SFTP put raises SftpCreate (an empty blob, when the file is
# opened) and SftpCommit (its contents, when it is closed); a Data Lake upload CreateFile, then
# FlushWithClose; a Blob REST upload PutBlob or PutBlockList once committed; CopyBlob, on an account
# with a hierarchical namespace, when the copy starts. On such an account (the SFTP one) the
# subscription passes these four only, so that no event for a file still being written is delivered.
COMPLETE_UPLOAD_APIS = ["FlushWithClose", "PutBlob", "PutBlockList", "SftpCommit"]


def expected_subscription(trigger: dict[str, str], function: str, account: str, hierarchical: bool) -> dict:
    return {
        "topic": f"system topic of the {account} account", "events": ["Microsoft.Storage.BlobCreated"],
        "schema": "EventGridSchema",
        "subject begins with": f"/blobServices/default/containers/{trigger['container']}/",
        "subject not ending with": [REPORT_SUFFIX],
        "data.api in": COMPLETE_UPLOAD_APIS if hierarchical else None,
        "endpoint": BLOB_WEBHOOK.format(function=function), "retry": (30, 1440),
        "switches": CONNECTION_SWITCHES[trigger["connection"]],
    }


def _subscription_function(record: dict) -> str | None:
    match = re.search(r"functionName=Host\.Functions\.(\w+)&", record["endpoint"])
    return match.group(1) if match else None


def bicep_switches(condition, parameters: dict) -> dict[str, object]:
    """The switches a resource's condition ANDs (bool parameters), each with its default; a condition of
    another form is reported as such."""
    if isinstance(condition, str) and parameters.get(condition, {}).get("type") == "bool":
        return {SWITCH_NAMES.get(condition, condition): parameters[condition].get("default")}
    operator = condition.get("operator", {}) if isinstance(condition, dict) else {}
    if operator.get("type") == "and":
        return {k: v for operand in operator["operands"].values()
                for k, v in bicep_switches(operand, parameters).items()}
    return {"not a switch": json.dumps(condition)}


def bicep_hierarchical_accounts(parsed: dict) -> set[str]:
    return {ACCOUNT_NAMES.get(symbol, symbol) for symbol, resource in parsed["resources"].items()
            if resource["type"] == "Microsoft.Storage/storageAccounts"
            and bicep_body(resource)[2]["properties"].get("isHnsEnabled") is True}


def bicep_event_subscriptions(parsed: dict) -> dict[str, dict]:
    """Function name (from the webhook URL) -> its subscription, written as expected_subscription does."""
    variables = {name: spec["value"] for name, spec in parsed.get("variables", {}).items()}
    parameters, resources = parsed["parameters"], parsed["resources"]

    def text(value) -> str:
        """A string with ${<variable>} replaced by the variable's literal value."""
        return re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)] if isinstance(
            variables.get(m.group(1)), str) else m.group(0), value)

    found = {}
    for resource in resources.values():
        if resource["type"] != "Microsoft.EventGrid/systemTopics/eventSubscriptions":
            continue
        _, condition, body = bicep_body(resource)
        topic = bicep_body(resources[body["parent"]])[2]
        properties = body["properties"]
        destination = properties["destination"]
        url = destination["properties"]["endpointUrl"]
        url = variables.get(url, url) if isinstance(url, str) else url
        # <switches> ? '<url>' : '': listKeys is called only when the subscription is made
        operands = url["operator"]["operands"] if isinstance(url, dict) and "operator" in url else {}
        if operands:
            assert operands["condition"] == condition and operands["false_value"] == "", "the URL follows the switch"
            url = operands["true_value"]
        url = text(url).replace("${functionApp.properties.defaultHostName}", "{app host}")
        url = re.sub(r"\$\{listKeys\('\$\{functionApp\.id\}/host/default', '[\w-]+'\)\.systemKeys\.blobs_extension\}",
                     "{blobs_extension key}", url)
        filters = properties["filter"]
        advanced = filters.get("advancedFilters", [])
        excluded = [f["values"] for f in advanced if f["operatorType"] == "StringNotEndsWith" and f["key"] == "subject"]
        apis = [f["values"] for f in advanced if f["operatorType"] == "StringIn" and f["key"] == "data.api"]
        source = bicep_text(topic["properties"]["source"]).removesuffix(".id")
        record = {
            "topic": f"system topic of the {ACCOUNT_NAMES.get(source, source)} account"
            if topic["properties"]["topicType"] == STORAGE_TOPIC_TYPE else topic,
            "events": filters["includedEventTypes"], "schema": properties["eventDeliverySchema"],
            "subject begins with": text(filters["subjectBeginsWith"]),
            "subject not ending with": [v for values in excluded for v in values],
            "data.api in": sorted(v for values in apis for v in (variables.get(values, values)
                                                                 if isinstance(values, str) else values)) or None,
            "endpoint": url if destination["endpointType"] == "WebHook" else destination,
            "retry": (properties["retryPolicy"]["maxDeliveryAttempts"],
                      properties["retryPolicy"]["eventTimeToLiveInMinutes"]),
            "switches": bicep_switches(condition, parameters),
        }
        found[_subscription_function(record)] = record
    return found


def terraform_hierarchical_accounts(parsed: dict) -> set[str]:
    return {ACCOUNT_NAMES.get(name, name) for block_type, name, body in tf_blocks(parsed, "resource")
            if block_type == "azurerm_storage_account" and body.get("is_hns_enabled") is True}


def terraform_event_subscriptions(parsed: dict) -> dict[str, dict]:
    """The same for Terraform: azurerm_eventgrid_system_topic(_event_subscription)."""
    local_values = {tf_literal(k): v for block in parsed.get("locals", []) for k, v in block.items()}
    variables = {tf_literal(k): v for block in parsed.get("variable", []) for k, v in block.items()}
    resources = {(t, n): body for t, n, body in tf_blocks(parsed, "resource")}
    data = {(t, n): body for t, n, body in tf_blocks(parsed, "data")}

    def text(value: str) -> str:
        value = _tf_string(value)
        return re.sub(r"\$\{local\.(\w+)\}", lambda m: tf_literal(local_values[m.group(1)]) if "${" not in str(
            local_values.get(m.group(1), "${")) else m.group(0), value)

    def switches(count: str) -> dict[str, object]:
        """var.<a> && var.<b> ? 1 : 0 -> the switches, each with its default."""
        match = re.fullmatch(r"\$\{(.+) \? 1 : 0\}", count)
        names = [re.fullmatch(r"var\.(\w+)", part.strip()) for part in match.group(1).split("&&")] if match else [None]
        if not all(names):
            return {"not a switch": count}
        return {SWITCH_NAMES.get(n.group(1), n.group(1)): variables[n.group(1)].get("default") for n in names}

    found = {}
    for (block_type, _), body in resources.items():
        if block_type != "azurerm_eventgrid_system_topic_event_subscription":
            continue
        topic_name = re.fullmatch(r"\$\{azurerm_eventgrid_system_topic\.(\w+)(?:\[0\])?\.name\}",
                                  body["system_topic"]).group(1)
        topic = resources["azurerm_eventgrid_system_topic", topic_name]
        (webhook,) = body["webhook_endpoint"]
        url = text(webhook["url"]).replace("${azapi_resource.function_app.output.properties.defaultHostName}",
                                           "{app host}")
        keys = re.search(r"\$\{data\.azurerm_function_app_host_keys\.(\w+)(\[0\])?\.blobs_extension_key\}", url)
        if keys:
            source = data["azurerm_function_app_host_keys", keys.group(1)]
            assert source["name"] == "${azapi_resource.function_app.name}", "the keys of the function app"
            assert switches(source.get("count", "")).items() <= switches(body.get("count", "")).items(), \
                "the keys are read only when the subscription is made"
            url = url.replace(keys.group(0), "{blobs_extension key}")
        (subject,) = body["subject_filter"]
        (retry,) = body["retry_policy"]
        filters = body.get("advanced_filter", [])
        excluded = [v for block in filters for f in block.get("string_not_ends_with", [])
                    if tf_literal(f["key"]) == "subject" for v in f["values"]]
        apis = [v for block in filters for f in block.get("string_in", []) if tf_literal(f["key"]) == "data.api"
                for v in tf_list(f["values"], local_values)]
        account = re.fullmatch(r"\$\{azurerm_storage_account\.(\w+)(?:\[0\])?\.id\}", topic["source_resource_id"])
        record = {
            "topic": f"system topic of the {ACCOUNT_NAMES.get(account.group(1), account.group(1))} account"
            if account and tf_literal(topic["topic_type"]) == STORAGE_TOPIC_TYPE else topic,
            "events": [tf_literal(e) for e in body["included_event_types"]],
            "schema": tf_literal(body.get("event_delivery_schema", '"EventGridSchema"')),
            "subject begins with": text(subject["subject_begins_with"]),
            "subject not ending with": [tf_literal(v) for v in excluded],
            "data.api in": sorted(apis) or None,
            "endpoint": url,
            "retry": (retry["max_delivery_attempts"], retry["event_time_to_live"]),
            "switches": switches(body.get("count", "")),
        }
        found[_subscription_function(record)] = record
    return found


def test_the_code_registers_its_blob_triggers_as_flex_consumption_runs_them():
    triggers = code_blob_triggers()
    assert {"chat_export_blob", "eml_drop_blob"} <= set(triggers), "chat exports (issue 17), EML drops (issue 21)"
    for name, trigger in triggers.items():
        # The Event Grid source (Flex Consumption has no polling blob trigger), on a connection the
        # templates configure with the app's identity, and the whole container.
        assert trigger["source"] == "EventGrid" and trigger["connection"] in CONNECTION_SWITCHES, name
        assert trigger["path"] == f"{trigger['container']}/{{name}}", name
    assert (triggers["eml_drop_blob"]["connection"], triggers["eml_drop_blob"]["container"]) == (
        settings_module.EML_DROPS_CONNECTION, settings_module.EML_DROPS_CONTAINER) == ("EmlDrops", "eml-drops")
    source = "\n".join(path.read_text(encoding="utf-8") for path in sorted((REPO_ROOT / "shared").rglob("*.py")))
    # as a string literal's end ('...{name}.report.json"'), not a call such as self.report.json_chunks()
    assert re.search(re.escape(REPORT_SUFFIX) + r"[\"']", source), \
        "the report name the subscriptions exclude is the one the code writes"


@pytest.mark.parametrize("template", ["bicep", "terraform"])
def test_each_blob_trigger_connection_names_the_account_of_its_container(template, bicep_json, terraform_json):
    deployment = bicep_deployment(bicep_json) if template == "bicep" else terraform_deployment(terraform_json)
    accounts = {trigger["connection"]: deployment.connection_accounts.get(trigger["connection"])
                for trigger in code_blob_triggers().values()}
    # AzureWebJobsStorage is the main account; EmlDrops the vendor's SFTP account (with the zone on).
    assert accounts == {"AzureWebJobsStorage": MAIN_ACCOUNT, "EmlDrops": DROP_ACCOUNT}
    for trigger in code_blob_triggers().values():
        assert deployment.container_accounts[trigger["container"]] == accounts[trigger["connection"]], trigger
        # Every connection names a queue service (a blob trigger's poison queue): the main account's,
        # where webjobs-blobtrigger-poison is created with its role.
        assert deployment.connection_queue_accounts[trigger["connection"]] == MAIN_ACCOUNT, trigger
    # The code's own storage clients are all in the main account; only the drop container is elsewhere.
    assert {c: a for c, a in deployment.container_accounts.items() if a != MAIN_ACCOUNT} == {
        settings_module.EML_DROPS_CONTAINER: DROP_ACCOUNT}
    # EmlDrops is identity-based, with the app's user-assigned identity (the code and the Python blob
    # extension read __clientId; the host reads __credential).
    settings = deployment.settings
    assert settings["EmlDrops__credential"] == "managedidentity"
    assert "identity" in json.dumps(settings["EmlDrops__clientId"]) or \
        "azurerm_user_assigned_identity.app.client_id" in settings["EmlDrops__clientId"]


def test_both_templates_subscribe_every_blob_trigger_to_its_container(bicep_json, terraform_json):
    for deployment, found, hierarchical in (
            (bicep_deployment(bicep_json), bicep_event_subscriptions(bicep_json),
             bicep_hierarchical_accounts(bicep_json)),
            (terraform_deployment(terraform_json), terraform_event_subscriptions(terraform_json),
             terraform_hierarchical_accounts(terraform_json))):
        expected = {}
        for name, trigger in code_blob_triggers().items():
            account = deployment.connection_accounts[trigger["connection"]]
            expected[name] = expected_subscription(trigger, name, account, account in hierarchical)
        assert found == expected, deployment.name
    assert bicep_hierarchical_accounts(bicep_json) == terraform_hierarchical_accounts(terraform_json) == {DROP_ACCOUNT}


def test_one_storage_system_topic_per_account_in_each_template(bicep_json, terraform_json):
    # A resource has at most one system topic: every subscription to an account shares it.
    topics = [bicep_body(r)[2] for r in bicep_json["resources"].values()
              if r["type"] == "Microsoft.EventGrid/systemTopics"]
    assert sorted((bicep_text(t["properties"]["source"]), t["properties"]["topicType"], t["location"])
                  for t in topics) == [
        ("emlDropStorage.id", STORAGE_TOPIC_TYPE, "location"), ("storage.id", STORAGE_TOPIC_TYPE, "location")]
    topics = [body for t, _, body in tf_blocks(terraform_json, "resource") if t == "azurerm_eventgrid_system_topic"]
    assert sorted((t["source_resource_id"], tf_literal(t["topic_type"]), t["location"]) for t in topics) == [
        ("${azurerm_storage_account.eml_drops[0].id}", STORAGE_TOPIC_TYPE, "${azurerm_resource_group.main.location}"),
        ("${azurerm_storage_account.main.id}", STORAGE_TOPIC_TYPE, "${azurerm_resource_group.main.location}")]


def test_a_subscription_to_another_container_or_function_is_noticed(bicep_json, terraform_json):
    changed = copy.deepcopy(bicep_json)
    changed["variables"]["chatExportsContainerName"]["value"] = "chat-export"
    record = bicep_event_subscriptions(changed)["chat_export_blob"]
    assert record["subject begins with"] == "/blobServices/default/containers/chat-export/"
    changed = copy.deepcopy(terraform_json)
    for block in changed["locals"]:
        if "chat_exports_function_name" in block:
            block["chat_exports_function_name"] = '"chat_export"'
    assert set(terraform_event_subscriptions(changed)) == {"chat_export", "eml_drop_blob"}


def test_a_drop_subscription_without_its_switches_or_filter_is_noticed(bicep_json, terraform_json):
    # Subscribed though the zone is off, or passing SftpCreate (an empty blob, its data not yet written).
    changed = copy.deepcopy(bicep_json)
    body = bicep_body(changed["resources"]["emlDropsSubscription"])[2]
    changed["resources"]["emlDropsSubscription"]["config"]["condition"] = "deployEventSubscriptions"
    operands = changed["variables"]["emlDropsWebhookUrl"]["value"]["operator"]["operands"]
    operands["condition"] = "deployEventSubscriptions"
    changed["variables"]["emlDropCompleteUploadApis"]["value"].append("SftpCreate")
    record = bicep_event_subscriptions(changed)["eml_drop_blob"]
    assert record["switches"] == {"event subscriptions": True} and "SftpCreate" in record["data.api in"]
    assert body["properties"]["filter"]["advancedFilters"][1]["values"] == "emlDropCompleteUploadApis"
    changed = copy.deepcopy(terraform_json)
    for block in changed["resource"]:
        subscription = block.get('"azurerm_eventgrid_system_topic_event_subscription"', {}).get('"eml_drops"')
        if subscription:
            subscription["count"] = "${var.create_event_subscriptions ? 1 : 0}"
            subscription["advanced_filter"][0].pop("string_in")
    record = terraform_event_subscriptions(changed)["eml_drop_blob"]
    assert record["switches"] == {"event subscriptions": True} and record["data.api in"] is None


def test_the_blob_trigger_queues_are_named_after_the_host_id_both_templates_set(bicep_json, terraform_json):
    # Bicep: AzureFunctionsWebHost__hostid = functionHostId = toLower(functionAppName), and the host
    # queue is 'azure-webjobs-blobtrigger-${functionHostId}'.
    variables = {name: spec["value"] for name, spec in bicep_json["variables"].items()}
    assert variables["appSettings"]["AzureFunctionsWebHost__hostid"] == "functionHostId"
    assert variables["functionHostId"] == {"function": {"type": "to_lower",
                                                        "parameters": {"string_to_change": "functionAppName"}}}
    assert with_host_id(variables["blobTriggerHostQueueName"]) == BLOB_TRIGGER_HOST_QUEUE
    assert variables["functionAppName"] == "${namePrefix}-func-${suffix}"
    assert variables["suffix"]["function"]["type"] == "unique_string"  # 13 characters
    prefix = {d["type"]: d.get("argument") for d in bicep_json["parameters"]["namePrefix"]["decorators"]}
    # Terraform: the same from local.function_host_id.
    local_values = {tf_literal(k): v for block in terraform_json["locals"] for k, v in block.items()}
    assert local_values["app_settings"]["AzureFunctionsWebHost__hostid"] == "${local.function_host_id}"
    assert local_values["function_host_id"] == "${lower(local.function_app_name)}"
    assert with_host_id(local_values["blob_trigger_host_queue_name"]) == BLOB_TRIGGER_HOST_QUEUE
    assert local_values["function_app_name"] == '"${var.name_prefix}-func-${local.suffix}"'
    assert ", 0, 13)" in local_values["suffix"]
    variables = {tf_literal(k): v for block in terraform_json["variable"] for k, v in block.items()}
    (validation,) = variables["name_prefix"]["validation"]
    assert "{2,10}" in validation["condition"] and prefix["max_length"] == 10
    # A host ID has at most 32 characters (lowercase letters, digits, single dashes); the queue name 63.
    longest = 10 + len("-func-") + 13
    assert longest <= 32 and len(BLOB_TRIGGER_HOST_QUEUE.replace(HOST_ID, "x" * longest)) <= 63


def test_the_blob_trigger_container_and_queues_have_their_own_roles_only(bicep_json, terraform_json):
    # The identity holds no data role on an account (only Reader on the main one, for the host), so
    # each trigger container and queue needs its own grant: on the container the role of its
    # connection (chat-exports: Blob Data Contributor, read the upload and its sidecar, write the
    # report; eml-drops: the drop reader, read the drop, write nothing but its report), Queue Data
    # Contributor on each blob trigger queue.
    for deployment in (bicep_deployment(bicep_json), terraform_deployment(terraform_json)):
        account = {(role, scope) for _, role, scope in deployment.grants if scope.startswith("storage-account")}
        assert account == {("Reader", "storage-account")}, deployment.name
        for trigger in code_blob_triggers().values():
            scope = f"container:{trigger['container']}"
            assert {r for _, r, s in deployment.grants if s == scope} == {
                CONNECTION_CONTAINER_ROLES[trigger["connection"]]}, deployment.name
        for queue in BLOB_TRIGGER_QUEUES:
            assert {r for _, r, s in deployment.grants if s == f"queue:{queue}"} == {QUEUE_ROLE}, deployment.name


# --- Monitoring: the query pack, the workbook and the report retention rule ----------------------
#
# infra/monitoring/queries/<name>.kql holds each query once; queries.json gives its display name
# and description; workbook.json is the workbook, whose query items name a file ("{{queries/<name>.kql}}")
# instead of holding its text. Both templates load these files (Bicep loadTextContent /
# loadJsonContent, Terraform file()); the tests below check that they load the same files, all of
# them, and that the queries only use telemetry the code emits.

MONITORING_DIR = REPO_ROOT / "infra" / "monitoring"
QUERY_DIR = MONITORING_DIR / "queries"
QUERY_MANIFEST = MONITORING_DIR / "queries.json"
WORKBOOK_FILE = MONITORING_DIR / "workbook.json"
TELEMETRY_MODULE = REPO_ROOT / "shared" / "telemetry.py"
WORKBOOK_REFERENCE = re.compile(r"\{\{queries/([\w-]+)\.kql\}\}")

# What a query may start from: Application Insights' tables (classic names), or a union of them.
KQL_TABLES = {"customMetrics", "dependencies", "traces", "requests", "exceptions"}

# The telemetry contract of issue 8 (shared/telemetry.py, meter "whatsapp_archiver"): what the
# queries may use. test_queries_use_only_names_the_code_emits checks the same names against the code.
TELEMETRY_CONTRACT = {
    "metrics": {
        "archiver.records.listed", "archiver.records.imported", "archiver.records.skipped",
        "archiver.records.poisoned", "archiver.items.written", "archiver.bytes.archived",
        "archiver.graph.throttled", "archiver.archive.latency",
    },
    "spans": {"archive_record", "list_page", "compose_transcript"},
    "attributes": {
        "archiver.window_id", "archiver.partial", "archiver.reason", "archiver.rule", "archiver.record_id",
        "archiver.record_key", "archiver.outcome", "archiver.mailbox_hash", "http.response.status_code",
    },
}


def query_files() -> dict[str, str]:
    return {path.stem: path.read_text(encoding="utf-8") for path in sorted(QUERY_DIR.glob("*.kql"))}


def query_manifest() -> dict[str, dict]:
    return json.loads(QUERY_MANIFEST.read_text(encoding="utf-8"))


def workbook_json() -> dict:
    return json.loads(WORKBOOK_FILE.read_text(encoding="utf-8"))


def workbook_query_items(workbook: dict) -> list[dict]:
    return [item for item in workbook["items"] if item["type"] == 3]


# --- KQL, lightly: strings, comments, brackets, statements ---------------------------------------

_KQL_PAIRS = {")": "(", "]": "[", "}": "{"}


def kql_code(text: str) -> tuple[str, list[str]]:
    """(the text with comments blanked, its top-level statements); ValueError on an unterminated
    string or unbalanced brackets. Strings: "..." and '...' with backslash escapes, @"..." and @'...'
    verbatim (a doubled quote inside)."""
    code, statements, stack, start, i = [], [], [], 0, 0
    while i < len(text):
        char = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            code.append(" " * (end - i))
            i = end
            continue
        if char in "\"'":
            verbatim = i > 0 and text[i - 1] == "@"
            j = i + 1
            while True:
                if j >= len(text) or text[j] == "\n":
                    raise ValueError(f"unterminated string at {text[i:i + 30]!r}")
                if not verbatim and text[j] == "\\":
                    j += 2
                    continue
                if text[j] == char:
                    if verbatim and text[j + 1:j + 2] == char:
                        j += 2
                        continue
                    break
                j += 1
            code.append(text[i:j + 1])
            i = j + 1
            continue
        if char in "([{":
            stack.append(char)
        elif char in ")]}":
            if not stack or stack[-1] != _KQL_PAIRS[char]:
                raise ValueError(f"unbalanced {char!r} at {text[max(0, i - 30):i + 1]!r}")
            stack.pop()
        elif char == ";" and not stack:
            statements.append("".join(code)[start:].strip())
            start = sum(len(part) for part in code) + 1
        code.append(char)
        i += 1
    if stack:
        raise ValueError(f"unclosed {''.join(stack)!r}")
    blanked = "".join(code)
    statements.append(blanked[start:].strip())
    return blanked, [s for s in statements if s]


_LITERAL = re.compile(r'^(?:"[^"]*"|\'[^\']*\'|-?\d+(?:\.\d+)?[a-z]*|true|false|(?:datetime|dynamic|timespan)\(.*\))$',
                      re.DOTALL)


def kql_problems(text: str) -> list[str]:
    """What makes a query file implausible as KQL; [] when it looks sound."""
    problems = []
    try:
        _, statements = kql_code(text)
    except ValueError as error:
        return [str(error)]
    tabular, scalar = set(KQL_TABLES), set()

    def source_problem(expression: str) -> str | None:
        first = re.match(r"[A-Za-z_]\w*", expression)
        if not first or first.group() not in tabular | {"union"}:
            return f"does not start from a known table: {expression[:40]!r}"
        if first.group() == "union":
            operands = re.match(r"union\s+([\w\s,]+?)\s*(?:\||$)", expression)
            unknown = {o.strip() for o in operands.group(1).split(",")} - tabular if operands else {"?"}
            if unknown:
                return f"union of unknown tables {sorted(unknown)}"
        return None

    for statement in statements[:-1]:
        let = re.match(r"let\s+([A-Za-z_]\w*)\s*=\s*(.*)$", statement, re.DOTALL)
        if not let:
            problems.append(f"a statement before the query is not a let: {statement[:40]!r}")
            continue
        name, value = let.groups()
        first_word = (value.split() or [""])[0]
        if _LITERAL.match(value.strip()) or re.match(r"[A-Za-z_]\w*\s*\(", value) or first_word in scalar:
            scalar.add(name)  # a literal or a scalar expression: trim(...), iff(...), another scalar
            continue
        if problem := source_problem(value):
            problems.append(f"let {name}: {problem}")
        tabular.add(name)
    if problem := source_problem(statements[-1]):
        problems.append(f"the query {problem}")
    return problems


def kql_header_title(text: str) -> str:
    first = text.splitlines()[0]
    assert first.startswith("// "), "a query starts with its title: '// <title>'"
    return first[3:].strip()


def archiver_names(text: str) -> set[str]:
    return set(re.findall(r"\barchiver(?:\.[a-z_]+)+", text))


def span_names(code: str) -> set[str]:
    """Quoted snake_case strings in the code of a query: span names (name == "archive_record")."""
    return {m.group(2) for m in re.finditer(r"""(["'])([a-z]+(?:_[a-z]+)+)\1""", code)}


def test_the_kql_check_finds_what_it_should():
    assert kql_problems('customMetrics | where name == "x"') == []
    assert kql_problems('let a = "x";\nlet t = traces | where message has a;\nunion t, requests | count') == []
    assert kql_problems('customMetrics | where (name == "x"') == ["unclosed '('"]
    assert kql_problems('customMetrics | where name == "x') and kql_problems("customMetrics | where x == 'a\n")
    assert kql_problems("customMetrics | extend x = @'it''s'") == []
    assert kql_problems('let a = trim(" ", "x");\nlet b = a;\ntraces | where message has b') == []
    assert kql_problems('let t = trace | take 1;\nt') == ["let t: does not start from a known table: 'trace | take 1'"]
    assert kql_problems("customMetric | count") == [
        "the query does not start from a known table: 'customMetric | count'"]
    assert kql_problems('union traces, spans | count') == ["the query union of unknown tables ['spans']"]
    assert kql_problems('// (unbalanced in a comment is fine\ntraces | where message has ")"') == []


@pytest.mark.parametrize("name", sorted(query_files()))
def test_each_query_is_plausible_kql_with_a_header(name):
    text = query_files()[name]
    assert kql_problems(text) == []
    header = list(itertools.takewhile(lambda line: line.startswith("//"), text.splitlines()))
    assert len(header) >= 3, "a header: title, blank comment line, what the query answers"
    assert kql_header_title(text) == query_manifest()[name]["displayName"]


def test_the_manifest_lists_every_query_file_once():
    manifest, files = query_manifest(), query_files()
    assert set(manifest) == set(files) and files
    names = [entry["displayName"] for entry in manifest.values()]
    assert len(set(names)) == len(names), "display names are unique within a query pack"
    for name, entry in manifest.items():
        assert set(entry) == {"displayName", "description"}, name
        assert 0 < len(entry["description"]) <= 256, name


def test_queries_use_only_the_telemetry_contract():
    known = TELEMETRY_CONTRACT["metrics"] | TELEMETRY_CONTRACT["attributes"]
    for name, text in query_files().items():
        code, _ = kql_code(text)
        assert archiver_names(text) <= known, (name, archiver_names(text) - known)
        assert span_names(code) <= TELEMETRY_CONTRACT["spans"], (name, span_names(code))
    used = set().union(*(archiver_names(text) for text in query_files().values()))
    # the questions of issue 8: failures by reason, latency, daily volume, throttling
    assert {"archiver.records.poisoned", "archiver.archive.latency", "archiver.records.listed",
            "archiver.graph.throttled", "archiver.bytes.archived"} <= used


def test_queries_use_only_names_the_code_emits():
    if not TELEMETRY_MODULE.exists():
        pytest.skip("shared/telemetry.py does not exist yet: the queries are checked against the contract only")
    source = "\n".join(path.read_text(encoding="utf-8") for path in sorted((REPO_ROOT / "shared").rglob("*.py")))
    literals = set(re.findall(r"""["']([\w.]+)["']""", source))
    for name, text in query_files().items():
        code, _ = kql_code(text)
        missing = (archiver_names(code) | span_names(code)) - literals
        assert missing == set(), f"{name}.kql uses {sorted(missing)}, which no string in shared/ names"


# --- Both templates: the query pack and the workbook ---------------------------------------------


@dataclass
class Monitoring:
    """Which files one template deploys as the query pack and the workbook, resolved to paths."""

    manifest: Path | None = None
    queries: dict[str, Path] = field(default_factory=dict)  # pack query -> the file its body is
    workbook: Path | None = None
    workbook_queries: dict[str, Path] = field(default_factory=dict)  # workbook reference -> file
    workbook_kind: dict[str, object] = field(default_factory=dict)


def _bicep_load(value, kind: str) -> Path | None:
    """The file of loadTextContent/loadJsonContent('<path>') (also inside any()), else None."""
    function = value.get("function", {}) if isinstance(value, dict) else {}
    if function.get("type") == "any":
        return _bicep_load(function["parameters"]["value"], kind)
    if function.get("type") != kind:
        return None
    return (BICEP_FILE.parent / function["parameters"]["file_path"]).resolve()


def bicep_text(value) -> str:
    """A parsed Bicep reference as text: 'appInsights.id', 'monitoringQueries[query.key]'."""
    if isinstance(value, dict) and "operator" in value:
        operator = value["operator"]
        a, b = (bicep_text(operand) for operand in operator["operands"].values())
        if operator["type"] == "property_accessor":
            return f"{a}.{b}"
        if operator["type"] == "index_accessor":
            return f"{a}[{b}]"
    return value if isinstance(value, str) else json.dumps(value)


def _bicep_replacements(value) -> list[tuple[str, str]]:
    """(old, new) of every replace() in a parsed Bicep expression, innermost first."""
    found = []
    if isinstance(value, dict):
        function = value.get("function", {})
        for item in value.values():
            found += _bicep_replacements(item)
        if function.get("type") == "replace":
            found.append((function["parameters"]["old_string"], function["parameters"]["new_string"]))
    elif isinstance(value, list):
        for item in value:
            found += _bicep_replacements(item)
    return found


def bicep_monitoring(parsed: dict) -> Monitoring:
    variables = {name: spec["value"] for name, spec in parsed.get("variables", {}).items()}
    resources = parsed["resources"]
    monitoring = Monitoring()

    def of_type(resource_type: str) -> list[dict]:
        return [r["config"] for r in resources.values() if r["type"] == resource_type]

    (pack_queries,) = of_type("Microsoft.OperationalInsights/queryPacks/queries")
    assert of_type("Microsoft.OperationalInsights/queryPacks"), "the pack itself"
    manifest_variable = pack_queries["loop_type"]["detail"]["object_name"]  # [for query in items(<manifest>)]
    monitoring.manifest = _bicep_load(variables[manifest_variable], "load_json_content")
    body = re.fullmatch(r"(\w+)\[query\.key\]", bicep_text(pack_queries["config"]["properties"]["body"]))
    assert body, "the body of each pack query is <texts>[query.key]"
    texts = variables[body.group(1)]
    monitoring.queries = {key.strip("'"): _bicep_load(value, "load_text_content") for key, value in texts.items()}
    assert pack_queries["config"]["name"]["function"]["type"] == "guid"

    (workbook,) = of_type("Microsoft.Insights/workbooks")
    data = workbook["properties"]["serializedData"]["function"]
    assert data["type"] == "string"
    document = data["parameters"]["value_to_convert"]
    assert set(document) == {"version", "items", "fallbackResourceIds"}
    assert [bicep_text(r) for r in document["fallbackResourceIds"]] == ["appInsights.id"]
    items = variables[document["items"]]  # [for item in <template>.items: ... replace(...) ...]
    template = items["loop_type"]["detail"]["array_name"]["operator"]["operands"]["operand_1"]
    assert bicep_text(document["version"]) == f"{template}.version"
    monitoring.workbook = _bicep_load(variables[template], "load_json_content")
    lookup = json.dumps(items["config"])
    assert f'"operand_1": "{body.group(1)}"' in lookup, "workbook queries come from the same texts"
    for reference in set(WORKBOOK_REFERENCE.findall(WORKBOOK_FILE.read_text())):
        key = f"{{{{queries/{reference}.kql}}}}"
        for old, new in _bicep_replacements(items["config"]):
            key = key.replace(old, new)
        monitoring.workbook_queries[reference] = monitoring.queries.get(key)
    monitoring.workbook_kind = {
        "kind": workbook["kind"], "category": workbook["properties"]["category"],
        "linked": bicep_text(workbook["properties"]["sourceId"]) == "appInsights.id",
        "deterministic name": workbook["name"]["function"]["type"] == "guid",
    }
    return monitoring


def terraform_monitoring(parsed: dict) -> Monitoring:
    local_values = {tf_literal(k): v for block in parsed.get("locals", []) for k, v in block.items()}
    resources = {(t, n): body for t, n, body in tf_blocks(parsed, "resource")}
    monitoring = Monitoring()

    def path(expression: str, **names: str) -> Path:
        """A file path expression, "${local.monitoring_dir}/x" and the like, resolved."""
        def quoted(value: str) -> str:  # '"text ${x}"' -> 'text ${x}'
            return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value

        expression = quoted(expression)
        for _ in range(5):
            expression = re.sub(r"\$\{local\.(\w+)\}", lambda m: quoted(local_values[m.group(1)]), expression)
        expression = expression.replace("${path.module}", str(TERRAFORM_DIR))
        for name, value in names.items():
            expression = expression.replace(f"${{{name}}}", value)
        return Path(expression).resolve()

    def file_argument(expression: str) -> str:
        match = re.search(r'file\("(.+?)"\)', expression)
        assert match, f"no file() in {expression!r}"
        return match.group(1)

    assert ("azurerm_log_analytics_query_pack", "main") in resources, "the pack itself"
    (pack_queries,) = [body for (t, _), body in resources.items() if t == "azurerm_log_analytics_query_pack_query"]
    manifest = re.fullmatch(r"\$\{local\.(\w+)\}", pack_queries["for_each"]).group(1)
    assert local_values[manifest].startswith("${jsondecode(file(")
    monitoring.manifest = path(file_argument(local_values[manifest]))
    texts = re.fullmatch(r"\$\{local\.(\w+)\[each\.key\]\}", pack_queries["body"]).group(1)
    loop = re.fullmatch(rf"\$\{{\{{for (\w+), _ in local\.{manifest} : \1 => file\(\"(.+)\"\)\}}\}}",
                        local_values[texts])
    assert loop, local_values[texts]
    monitoring.queries = {name: path(loop.group(2), **{loop.group(1): name})
                          for name in json.loads(monitoring.manifest.read_text())}
    assert pack_queries["name"].startswith("${uuidv5(")

    workbook = resources["azurerm_application_insights_workbook", "main"]
    data = re.fullmatch(r"\$\{local\.(\w+)\}", workbook["data_json"]).group(1)
    expression = local_values[data]
    assert "fallbackResourceIds = [azurerm_application_insights.main.id]" in expression
    template = re.match(r"\$\{jsonencode\(\{version = local\.(\w+)\.version, items = \[for item in local\.\1\.items",
                        expression)
    assert template, expression
    monitoring.workbook = path(file_argument(local_values[template.group(1)]))
    lookup = re.search(rf'local\.{texts}\[trimsuffix\(trimprefix\(item\.content\.query, "(.+?)"\), "(.+?)"\)\]',
                       expression)
    assert lookup, "workbook queries come from the same texts"
    for reference in set(WORKBOOK_REFERENCE.findall(WORKBOOK_FILE.read_text())):
        key = f"{{{{queries/{reference}.kql}}}}"
        key = key.removeprefix(lookup.group(1)).removesuffix(lookup.group(2))
        monitoring.workbook_queries[reference] = monitoring.queries.get(key)
    monitoring.workbook_kind = {
        "kind": "shared",  # azurerm_application_insights_workbook makes shared workbooks only
        "category": tf_literal(workbook["category"]),
        "linked": "azurerm_application_insights.main.id" in workbook["source_id"],
        "deterministic name": workbook["name"].startswith("${uuidv5("),
    }
    return monitoring


def test_both_templates_deploy_the_query_pack_and_workbook_from_the_same_files(bicep_json, terraform_json):
    files = {name: QUERY_DIR / f"{name}.kql" for name in query_files()}
    expected = Monitoring(
        manifest=QUERY_MANIFEST, queries=files, workbook=WORKBOOK_FILE,
        workbook_queries={name: files[name] for name in query_files()},
        workbook_kind={"kind": "shared", "category": "workbook", "linked": True, "deterministic name": True},
    )
    assert bicep_monitoring(bicep_json) == expected
    assert terraform_monitoring(terraform_json) == expected


def test_a_query_file_missing_from_bicep_is_noticed(bicep_json):
    changed = copy.deepcopy(bicep_json)
    changed["variables"]["monitoringQueries"]["value"].pop("'graph-throttling'")
    monitoring = bicep_monitoring(changed)
    assert "graph-throttling" not in monitoring.queries and monitoring.workbook_queries["graph-throttling"] is None


def test_the_workbook_has_one_section_per_query():
    workbook = workbook_json()
    # Both templates rebuild the document from these two keys (and add fallbackResourceIds): any
    # other key would be dropped silently.
    assert set(workbook) == {"version", "items"} and workbook["version"] == "Notebook/1.0"
    names = [item["name"] for item in workbook["items"]]
    assert len(set(names)) == len(names)
    parameters = {p["name"]: p for item in workbook["items"] if item["type"] == 9
                  for p in item["content"]["parameters"]}
    assert parameters["TimeRange"]["type"] == 4
    referenced = []
    for item in workbook_query_items(workbook):
        content = item["content"]
        match = WORKBOOK_REFERENCE.fullmatch(content["query"])
        assert match, f"{item['name']}: the query names a file, {{{{queries/<name>.kql}}}}, never holds a copy"
        name = match.group(1)
        referenced.append(name)
        text = query_files()[name]
        assert content["timeContextFromParameter"] == "TimeRange", name
        assert content["resourceType"] == "microsoft.insights/components", name
        assert content["visualization"] == ("timechart" if "render timechart" in text else "table"), name
        # The workbook substitutes {Name} everywhere in a query, comments included.
        assert set(re.findall(r"\{([A-Za-z]\w*)\}", text)) <= set(parameters), name
    assert sorted(referenced) == sorted(query_files())
    charts = {i["name"] for i in workbook_query_items(workbook) if i["content"]["visualization"] == "timechart"}
    assert {"daily-volume", "archive-latency", "graph-throttling"} <= charts
    assert next(i for i in workbook_query_items(workbook) if i["name"] == "failures-by-reason")[
        "content"]["visualization"] == "table"


# --- Report retention: a lifecycle rule on reports/ only -----------------------------------------


def _retention_code_default() -> int:
    return Settings.model_fields["report_retention_days"].default


def test_the_bicep_lifecycle_rule_deletes_old_reports_only(bicep_json):
    from shared.adapters.azure_storage import BlobReportStore

    variables = {name: spec["value"] for name, spec in bicep_json["variables"].items()}
    policies = [r["config"] for r in bicep_json["resources"].values()
                if r["type"] == "Microsoft.Storage/storageAccounts/managementPolicies"]
    assert len(policies) == 1 and policies[0]["name"] == "default" and policies[0]["parent"] == "storage"
    (rule,) = policies[0]["properties"]["policy"]["rules"]
    assert (rule["type"], rule["enabled"]) == ("Lifecycle", True)
    filters = rule["definition"]["filters"]
    prefixes = [re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)], p) for p in filters["prefixMatch"]]
    state_container = bicep_deployment(bicep_json).settings["STATE_CONTAINER"]
    assert prefixes == [f"{state_container}/{BlobReportStore.PREFIX}"] == ["archive-state/reports/"]
    assert filters["blobTypes"] == ["blockBlob"] and set(filters) == {"blobTypes", "prefixMatch"}
    assert rule["definition"]["actions"] == {
        "baseBlob": {"delete": {"daysAfterModificationGreaterThan": "reportRetentionDays"}}}
    parameter = bicep_json["parameters"]["reportRetentionDays"]
    bounds = {d["type"]: d["argument"] for d in parameter["decorators"] if d["type"] in ("min_value", "max_value")}
    assert bounds == {"min_value": 1, "max_value": 3650}
    assert parameter["default"] == _retention_code_default()
    assert "reportRetentionDays" in strings_in(bicep_json["variables"]["appSettings"]["value"]["REPORT_RETENTION_DAYS"])


def test_the_terraform_lifecycle_rule_deletes_old_reports_only(terraform_json):
    from shared.adapters.azure_storage import BlobReportStore

    local_values = {tf_literal(k): v for block in terraform_json["locals"] for k, v in block.items()}
    policies = [body for block_type, _, body in tf_blocks(terraform_json, "resource")
                if block_type == "azurerm_storage_management_policy"]
    assert len(policies) == 1 and policies[0]["storage_account_id"] == "${azurerm_storage_account.main.id}"
    (rule,) = policies[0]["rule"]
    assert rule["enabled"] is True
    (filters,) = rule["filters"]
    prefixes = [tf_literal(re.sub(r"\$\{local\.(\w+)\}", lambda m: tf_literal(local_values[m.group(1)]), p))
                for p in filters["prefix_match"]]
    state_container = terraform_deployment(terraform_json).settings["STATE_CONTAINER"]
    assert prefixes == [f"{state_container}/{BlobReportStore.PREFIX}"] == ["archive-state/reports/"]
    assert [tf_literal(b) for b in filters["blob_types"]] == ["blockBlob"]
    assert {k for k in filters if not k.startswith("__")} == {"blob_types", "prefix_match"}
    (actions,) = rule["actions"]
    assert {k for k in actions if not k.startswith("__")} == {"base_blob"}
    (base_blob,) = actions["base_blob"]
    assert {k: v for k, v in base_blob.items() if not k.startswith("__")} == {
        "delete_after_days_since_modification_greater_than": "${var.report_retention_days}"}
    variables = {tf_literal(k): v for block in terraform_json["variable"] for k, v in block.items()}
    variable = variables["report_retention_days"]
    assert variable["default"] == _retention_code_default()
    (validation,) = variable["validation"]
    assert "var.report_retention_days >= 1" in validation["condition"]
    assert "var.report_retention_days <= 3650" in validation["condition"]
    app_settings = next(block["app_settings"] for block in terraform_json["locals"] if "app_settings" in block)
    assert "var.report_retention_days" in app_settings["REPORT_RETENTION_DAYS"]


def test_the_retention_bounds_are_the_codes():
    metadata = {type(m).__name__: m for m in Settings.model_fields["report_retention_days"].metadata}
    assert (metadata["Ge"].ge, metadata["Le"].le) == (1, 3650)


# --- Evidence store (issue 18): a container under WORM, a role that cannot delete -----------------
#
# Storage docs, "Container-level WORM policies for immutable blob data": a container-level
# time-based retention policy needs no versioning and is the only kind that allows protected append
# writes (allowProtectedAppendWrites: Append Block to append blobs; ...All also appends to block
# blobs, which the code never does). Immutable storage is incompatible with point-in-time restore and
# last access time tracking and unsupported with NFS 3.0 and SFTP. The templates leave the policy
# unlocked: locking is irreversible and is the firm's act (docs/deploy.md).

BICEP_POLICY = "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies"
BICEP_CONTAINER = "Microsoft.Storage/storageAccounts/blobServices/containers"
LEGAL_HOLD_COMMAND = "az storage container legal-hold set "
# A legal hold offers only the "All" append setting; without it every manifest append would fail.
LEGAL_HOLD_APPENDS = "--allow-protected-append-writes-all true"


def _evidence_retention_code_bounds() -> tuple[int, int, int]:
    field_info = Settings.model_fields["evidence_retention_days"]
    metadata = {type(m).__name__: m for m in field_info.metadata}
    return field_info.default, metadata["Ge"].ge, metadata["Le"].le


def test_the_evidence_settings_are_the_codes():
    assert evidence_container() == "archive-evidence"
    assert _evidence_retention_code_bounds() == (2557, 1, 146_000)  # 7 years; Azure allows 1 to 146,000 days
    assert {"EVIDENCE_CONTAINER", "EVIDENCE_RETENTION_DAYS"} <= set(code_settings())


def _bicep_evidence_container(parsed: dict) -> tuple[str, dict]:
    variables = {name: spec["value"] for name, spec in parsed["variables"].items()}
    (found,) = [(symbol, bicep_body(r)[2]) for symbol, r in parsed["resources"].items()
                if r["type"] == BICEP_CONTAINER and variables.get(bicep_body(r)[2]["name"]) == evidence_container()]
    return found


def test_the_bicep_evidence_container_is_under_an_unlocked_worm_policy(bicep_json):
    parameters, resources = bicep_json["parameters"], bicep_json["resources"]
    symbol, container = _bicep_evidence_container(bicep_json)
    assert container["properties"]["publicAccess"] == "None"
    (policy,) = [r for r in resources.values() if r["type"] == BICEP_POLICY]
    _, condition, body = bicep_body(policy)
    assert (body["parent"], body["name"]) == (symbol, "default")
    assert body["properties"] == {
        "immutabilityPeriodSinceCreationInDays": "evidenceRetentionDays",
        "allowProtectedAppendWrites": True,
        "allowProtectedAppendWritesAll": False,
    }
    # Written unless the firm says it has locked it (Azure refuses every write to a locked policy but
    # an extension); the template itself never locks (a lock is an action, not a property).
    assert condition == {"operator": {"type": "not", "operands": {"bool_value": "evidencePolicyLocked"}}}
    assert (parameters["evidencePolicyLocked"]["type"], parameters["evidencePolicyLocked"]["default"]) == (
        "bool", False)
    assert "state" not in body["properties"] and "Locked" not in json.dumps(body)
    retention = parameters["evidenceRetentionDays"]
    bounds = {d["type"]: d["argument"] for d in retention["decorators"] if d["type"] in ("min_value", "max_value")}
    default, low, high = _evidence_retention_code_bounds()
    assert (retention["type"], retention["default"], bounds) == ("int", default, {"min_value": low, "max_value": high})
    settings = bicep_json["variables"]["appSettings"]["value"]
    assert "evidenceRetentionDays" in strings_in(settings["EVIDENCE_RETENTION_DAYS"])
    assert settings["EVIDENCE_CONTAINER"] == "evidenceContainerName"
    # The app starts after its container, the policy and its role exist.
    depends = bicep_body(resources["functionApp"])[2]["dependsOn"]
    assert {symbol, "evidencePolicy", "evidenceRoleAssignment"} <= set(depends)


def test_the_terraform_evidence_container_is_under_an_unlocked_worm_policy(terraform_json):
    resources = {(t, n): body for t, n, body in tf_blocks(terraform_json, "resource")}
    variables = {tf_literal(k): v for block in terraform_json["variable"] for k, v in block.items()}
    local_values = {tf_literal(k): v for block in terraform_json["locals"] for k, v in block.items()}
    # the container of its own (not the for_each of main.tf) that is not switched (eml_drops.tf)
    (name,) = [n for (t, n), body in resources.items()
               if t == "azurerm_storage_container" and "for_each" not in body and "count" not in body]
    container = resources["azurerm_storage_container", name]
    assert tf_literal(local_values[re.fullmatch(r"\$\{local\.(\w+)\}", container["name"]).group(1)]) == \
        evidence_container()
    assert tf_literal(container["container_access_type"]) == "private"
    assert container["lifecycle"][0]["prevent_destroy"] is True
    (policy,) = [body for (t, _), body in resources.items() if t == "azurerm_storage_container_immutability_policy"]
    assert _tf_string(policy["storage_container_resource_manager_id"]) == (
        f"${{azurerm_storage_account.main.id}}/blobServices/default/containers/${{azurerm_storage_container.{name}.name}}")
    assert policy["immutability_period_in_days"] == "${var.evidence_retention_days}"
    assert (policy["protected_append_writes_enabled"], policy["protected_append_writes_all_enabled"]) == (True, False)
    # Never locked by Terraform; a lock made by the firm is read and left alone.
    assert policy.get("locked", False) is False
    (lifecycle,) = policy["lifecycle"]
    assert (lifecycle["prevent_destroy"], lifecycle["ignore_changes"]) == (True, ["locked"])
    variable = variables["evidence_retention_days"]
    default, low, high = _evidence_retention_code_bounds()
    assert variable["default"] == default
    (validation,) = variable["validation"]
    assert f"var.evidence_retention_days >= {low}" in validation["condition"]
    assert f"var.evidence_retention_days <= {high}" in validation["condition"]
    app_settings = next(block["app_settings"] for block in terraform_json["locals"] if "app_settings" in block)
    assert app_settings["EVIDENCE_RETENTION_DAYS"] == "${tostring(var.evidence_retention_days)}"
    assert app_settings["EVIDENCE_CONTAINER"] == "${local.evidence_container_name}"
    depends = resources["azapi_resource", "function_app"]["depends_on"]
    assert {f"${{azurerm_storage_container.{name}}}", "${azurerm_storage_container_immutability_policy.evidence}",
            "${azurerm_role_assignment.evidence}"} <= set(depends)


def test_the_account_keeps_nothing_container_level_worm_excludes(bicep_json, terraform_json):
    resources = bicep_json["resources"]
    account = resources["storage"]["config"]["properties"]
    assert not {k for k in ("isHnsEnabled", "isNfsV3Enabled", "isSftpEnabled") if account.get(k)}
    assert "immutableStorageWithVersioning" not in account  # no account-level (version-level) WORM
    blob = resources["blobService"]["config"]["properties"]
    assert not blob.get("isVersioningEnabled")  # container-level WORM needs none; versions would be paid for
    assert not blob.get("restorePolicy", {}).get("enabled")  # point-in-time restore: incompatible
    assert not blob.get("lastAccessTimeTrackingPolicy", {}).get("enable")  # last access tracking: incompatible
    assert blob["deleteRetentionPolicy"]["enabled"] is True  # soft delete, which Microsoft recommends beside it

    tf = {(t, n): body for t, n, body in tf_blocks(terraform_json, "resource")}
    account = tf["azurerm_storage_account", "main"]
    assert not {k for k in ("is_hns_enabled", "nfsv3_enabled", "sftp_enabled") if account.get(k)}
    assert "immutability_policy" not in account
    (blob,) = account["blob_properties"]
    assert not blob.get("versioning_enabled") and not blob.get("last_access_time_enabled")
    assert "restore_policy" not in blob and blob["delete_retention_policy"]


def test_the_custom_roles_are_the_evidence_writer_and_the_drop_reader_and_neither_deletes(bicep_json, terraform_json):
    bicep_roles, terraform_roles = bicep_custom_roles(bicep_json), terraform_custom_roles(terraform_json)
    expected = [EVIDENCE_ROLE, custom_role_name(EML_DROP_READER)]
    for roles in (bicep_roles, terraform_roles):
        assert sorted(custom_role_name(role["permissions"]) for role in roles.values()) == sorted(expected)
        for role in roles.values():
            assert forbidden_actions(role["permissions"]) == []
            assert role["assignable scopes"] == ["resource-group"]  # assignable in this resource group only
    # Role names are unique in a tenant: each carries the deployment's prefix and suffix.
    for symbol, role in bicep_roles.items():
        assert "${namePrefix}" in role["name"] and "${suffix}" in role["name"]
        assert role["type"].lower() == "customrole"
        assert bicep_body(bicep_json["resources"][symbol])[2]["name"]["function"]["type"] == "guid"
    for role in terraform_roles.values():
        assert "${var.name_prefix}" in role["name"] and "${local.suffix}" in role["name"]
        assert role["scope"] == "${azurerm_resource_group.main.id}"
    drops = {f"container:{c}" for c, role in trigger_container_roles().items() if role == EML_DROP_ROLE}
    assert drops == {f"container:{settings_module.EML_DROPS_CONTAINER}"}
    for deployment in (bicep_deployment(bicep_json), terraform_deployment(terraform_json)):
        custom = {(principal, role, scope) for principal, role, scope in deployment.grants
                  if role.startswith(CUSTOM_ROLE)}
        assert custom == {("identity", EVIDENCE_ROLE, f"container:{evidence_container()}")} | {
            ("identity", EML_DROP_ROLE, scope) for scope in drops}, deployment.name


def test_a_custom_role_that_may_delete_or_a_builtin_role_on_the_evidence_is_reported(bicep_json, terraform_json):
    changed = copy.deepcopy(bicep_json)
    changed["variables"]["evidenceWriterDataActions"]["value"].append(BLOB_ACTION + "blobs/delete")
    problems = grant_problems(bicep_grants(changed))
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"a custom role grants ['{BLOB_ACTION}blobs/delete'] on container:archive-evidence")
    assert problems[1].startswith("a role other than the evidence writer on the evidence container")
    assert template_differences(bicep_deployment(changed), terraform_deployment(terraform_json))[0].startswith(
        "grants: only in Bicep")

    changed = copy.deepcopy(terraform_json)
    for block in changed["locals"]:
        if "evidence_writer_actions" in block:
            block["evidence_writer_actions"].append(f'"{BLOB_ACTION}immutabilityPolicies/delete"')
    assert [p.split(" on ")[0] for p in grant_problems(terraform_grants(changed))] == [
        f"a custom role grants ['{BLOB_ACTION}immutabilityPolicies/delete']",
        "a role other than the evidence writer",
    ]

    changed = copy.deepcopy(bicep_json)
    _bicep_role_assignment(changed, "evidenceRoleAssignment")["properties"]["roleDefinitionId"] = {"function": {
        "type": "subscription_resource_id", "parameters": {"resource_name_1": "storageBlobDataContributor"}}}
    assert grant_problems(bicep_grants(changed)) == [
        "a role other than the evidence writer on the evidence container: "
        f"{DATA_CONTAINER_ROLE} on container:archive-evidence for identity",
    ]


def test_a_legal_hold_is_requested_never_placed(bicep_json, terraform_json):
    # No template can declare a container legal hold (the ARM action setLegalHold with case tags; the
    # azurerm container only reports has_legal_hold): the parameter marks the container and the
    # output gives the command a person runs (docs/deploy.md).
    parameters = bicep_json["parameters"]
    assert (parameters["evidenceLegalHold"]["type"], parameters["evidenceLegalHold"]["default"]) == ("bool", False)
    _, container = _bicep_evidence_container(bicep_json)
    assert container["properties"]["metadata"] == {"legal_hold_requested": {"operator": {"type": "conditional",
        "operands": {"condition": "evidenceLegalHold", "true_value": "true", "false_value": "false"}}}}
    output = bicep_json["outputs"]["evidenceLegalHoldCommand"]["value"]["operator"]["operands"]
    assert (output["condition"], output["false_value"]) == ("evidenceLegalHold", "")
    command = output["true_value"]
    assert command.startswith(LEGAL_HOLD_COMMAND) and command.endswith(LEGAL_HOLD_APPENDS)
    assert "--container-name ${evidenceContainerName} " in command and "--tags <matterid> " in command
    assert not [r for r in bicep_json["resources"].values() if r["type"] == "Microsoft.Resources/deploymentScripts"]

    variables = {tf_literal(k): v for block in terraform_json["variable"] for k, v in block.items()}
    assert (variables["evidence_legal_hold"]["default"], variables["evidence_legal_hold"]["type"]) == (
        False, "bool")
    resources = {(t, n): body for t, n, body in tf_blocks(terraform_json, "resource")}
    container = next(body for (t, _), body in resources.items()
                     if t == "azurerm_storage_container" and "for_each" not in body and "count" not in body)
    assert container["metadata"] == {"legal_hold_requested": "${tostring(var.evidence_legal_hold)}"}
    outputs = {tf_literal(k): v for block in terraform_json["output"] for k, v in block.items()}
    value = outputs["evidence_legal_hold_command"]["value"]
    match = re.fullmatch(r'\$\{var\.evidence_legal_hold \? "(.+)" : ""\}', value)
    assert match, value
    assert match.group(1).startswith(LEGAL_HOLD_COMMAND) and match.group(1).endswith(LEGAL_HOLD_APPENDS)
    assert "--container-name ${local.evidence_container_name} " in match.group(1)
    # Nothing runs commands or posts actions behind the plan's back.
    assert not [t for t, _ in resources if t in ("azapi_resource_action", "null_resource", "terraform_data")]
    assert "local-exec" not in json.dumps(terraform_json)


# --- Vendor EML drop zone (issue 21): the SFTP account, its login, the identity's rights ---------
#
# SFTP needs a hierarchical namespace and local users (Storage docs, "SSH File Transfer Protocol
# (SFTP) support for Azure Blob Storage"); the main account keeps neither (container-level WORM
# excludes SFTP), so the drop zone is an account of its own, created only with the switch, which is
# off by default (SFTP is billed by the hour while enabled). An SFTP login bypasses RBAC: the local
# user's own permissions are all the vendor has, so they must not include delete.

LOCAL_USER = "Microsoft.Storage/storageAccounts/localUsers"
DROP_ACCOUNT_PROPERTIES = {  # Bicep property: (Terraform argument, value)
    "isHnsEnabled": ("is_hns_enabled", True), "isSftpEnabled": ("sftp_enabled", True),
    "isLocalUserEnabled": ("local_user_enabled", True), "allowSharedKeyAccess": ("shared_access_key_enabled", False),
    "allowBlobPublicAccess": ("allow_nested_items_to_be_public", False),
    "supportsHttpsTrafficOnly": ("https_traffic_only_enabled", True),
    "minimumTlsVersion": ("min_tls_version", "TLS1_2"),
    "allowCrossTenantReplication": ("cross_tenant_replication_enabled", False),
}


def _drop_user_code_length() -> tuple[int, int]:
    return 3, 64  # Azure local user names: 3 to 64 lowercase letters and digits (azurerm validate.LocalUserName)


def test_the_drop_account_is_an_sftp_account_of_its_own_behind_the_switch(bicep_json, terraform_json):
    resources = bicep_json["resources"]
    _, condition, account = bicep_body(resources["emlDropStorage"])
    assert condition == "emlDropZone" and bicep_json["parameters"]["emlDropZone"]["default"] is False
    properties = account["properties"]
    assert {k: properties.get(k) for k in DROP_ACCOUNT_PROPERTIES} == {
        k: v for k, (_, v) in DROP_ACCOUNT_PROPERTIES.items()}
    assert (account["kind"], account["sku"]["name"]) == ("StorageV2", "storageSku")  # the main account's redundancy
    assert bicep_json["variables"]["emlDropStorageAccountName"]["value"]["function"]["type"] == "take"
    _, condition, blob = bicep_body(resources["emlDropBlobService"])
    assert condition == "emlDropZone" and not blob["properties"].get("isVersioningEnabled")
    assert blob["properties"]["deleteRetentionPolicy"]["enabled"] is True
    assert blob["properties"]["containerDeleteRetentionPolicy"]["enabled"] is True

    tf = {(t, n): body for t, n, body in tf_blocks(terraform_json, "resource")}
    account = tf["azurerm_storage_account", "eml_drops"]
    assert account["count"] == "${var.eml_drop_zone ? 1 : 0}"
    assert {k: tf_literal(account.get(arg)) for k, (arg, _) in DROP_ACCOUNT_PROPERTIES.items()} == {
        k: v for k, (_, v) in DROP_ACCOUNT_PROPERTIES.items()}
    assert (tf_literal(account["account_kind"]), account["account_replication_type"]) == (
        "StorageV2", "${var.storage_sku}")
    (blob,) = account["blob_properties"]
    assert blob["delete_retention_policy"] and blob["container_delete_retention_policy"]
    assert not blob.get("versioning_enabled")
    locals_ = {tf_literal(k): v for block in terraform_json["locals"] for k, v in block.items()}
    assert locals_["eml_drop_storage_account_name"] == '${substr("${var.name_prefix}dz${local.suffix}", 0, 24)}'
    variables = {tf_literal(k): v for block in terraform_json["variable"] for k, v in block.items()}
    assert variables["eml_drop_zone"]["default"] is False


def test_the_vendor_login_is_an_ssh_key_user_at_home_in_eml_drops_without_delete(bicep_json, terraform_json):
    container = settings_module.EML_DROPS_CONTAINER
    (symbol,) = [n for n, r in bicep_json["resources"].items() if r["type"] == LOCAL_USER]
    _, condition, user = bicep_body(bicep_json["resources"][symbol])
    variables = {name: spec["value"] for name, spec in bicep_json["variables"].items()}
    assert (user["parent"], user["name"], condition) == ("emlDropStorage", "emlDropUserName", "emlDropLogin")
    assert variables["emlDropLogin"]["operator"]["type"] == "and"  # the zone, and a key given
    properties = user["properties"]
    assert (variables[properties["homeDirectory"]], properties["hasSshKey"], properties["hasSshPassword"],
            properties["hasSharedKey"]) == (container, True, False, False)
    (scope,) = properties["permissionScopes"]
    assert (sorted(scope["permissions"]), scope["service"], variables[scope["resourceName"]]) == (
        sorted("rwlc"), "blob", container)
    keys = properties["sshAuthorizedKeys"]["loop_type"]["detail"]["array_name"]
    assert "emlDropSshPublicKey" in keys  # split(emlDropSshPublicKey, ','): the keys, comma-separated
    parameters = bicep_json["parameters"]
    assert parameters["emlDropSshPublicKey"]["default"] == "" and parameters["emlDropZone"]["default"] is False
    lengths = {d["type"]: d["argument"] for d in parameters["emlDropUserName"]["decorators"]
               if d["type"] in ("min_length", "max_length")}
    assert (lengths["min_length"], lengths["max_length"]) == _drop_user_code_length()
    assert re.fullmatch(r"[a-z0-9]{3,64}", parameters["emlDropUserName"]["default"])

    tf = {(t, n): body for t, n, body in tf_blocks(terraform_json, "resource")}
    user = tf["azapi_resource", "eml_drop_user"]
    assert tf_literal(user["type"]) == f"{LOCAL_USER}@2023-05-01"
    assert (user["count"], user["parent_id"], user["name"]) == (
        "${local.eml_drop_login ? 1 : 0}", "${azurerm_storage_account.eml_drops[0].id}", "${var.eml_drop_user_name}")
    properties = user["body"]["properties"]
    assert (properties["homeDirectory"], properties["hasSshKey"], properties["hasSshPassword"],
            properties["hasSharedKey"]) == ("${local.eml_drops_container_name}", True, False, False)
    (scope,) = properties["permissionScopes"]
    assert (sorted(tf_literal(scope["permissions"])), tf_literal(scope["service"]), scope["resourceName"]) == (
        sorted("rwlc"), "blob", "${local.eml_drops_container_name}")
    variables = {tf_literal(k): v for block in terraform_json["variable"] for k, v in block.items()}
    key = variables["eml_drop_ssh_public_key"]
    assert tf_literal(key["default"]) == "" and "sensitive" not in key  # a public key; no default key
    required, form = (v["condition"] for v in key["validation"])
    assert "!var.eml_drop_zone ||" in required  # with the zone, a key (cross-variable validation, Terraform 1.9)
    assert "ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384" in form and "<= 10" in form
    (name_rule,) = variables["eml_drop_user_name"]["validation"]
    assert "^[a-z0-9]{3,64}$" in name_rule["condition"]
    assert tf_literal(variables["eml_drop_user_name"]["default"]) == parameters["emlDropUserName"]["default"]


def test_the_identity_writes_only_reports_in_the_drop_container(bicep_json, terraform_json):
    for deployment in (bicep_deployment(bicep_json), terraform_deployment(terraform_json)):
        (grant,) = [g for g in deployment.grants if g[2] == f"container:{settings_module.EML_DROPS_CONTAINER}"]
        assert grant == ("identity", EML_DROP_ROLE, f"container:{settings_module.EML_DROPS_CONTAINER}")
    assert REPORT_WRITES_ONLY.endswith(f"StringLike '*{REPORT_SUFFIX}'))")
    # The same assignment without its condition, or with another version, is reported.
    changed = copy.deepcopy(bicep_json)
    del _bicep_role_assignment(changed, "emlDropRoleAssignment")["properties"]["condition"]
    assert [p.split(":")[0] for p in grant_problems(bicep_grants(changed))] == [
        "a role other than the drop reader under its condition on a drop container"]
    changed = copy.deepcopy(terraform_json)
    for block in changed["resource"]:
        if '"eml_drops"' in block.get('"azurerm_role_assignment"', {}):
            block['"azurerm_role_assignment"']['"eml_drops"']["condition_version"] = '"1.0"'
    assert [p.split(":")[0] for p in grant_problems(terraform_grants(changed))] == [
        "a role other than the drop reader under its condition on a drop container",
        "a condition of a version other than 2.0"]


def test_the_drop_zone_settings_and_outputs(bicep_json, terraform_json):
    parameters = bicep_json["parameters"]
    bounds = {d["type"]: d["argument"] for d in parameters["emlDropReportDelaySeconds"]["decorators"]
              if d["type"] in ("min_value", "max_value")}
    metadata = {type(m).__name__: m for m in Settings.model_fields["eml_drop_report_delay_seconds"].metadata}
    assert (bounds["min_value"], bounds["max_value"]) == (metadata["Ge"].ge, metadata["Le"].le) == (0, 3600)
    variables = {tf_literal(k): v for block in terraform_json["variable"] for k, v in block.items()}
    (rule,) = variables["eml_drop_report_delay_seconds"]["validation"]
    assert ">= 0" in rule["condition"] and "<= 3600" in rule["condition"]
    outputs = {tf_literal(k): v for block in terraform_json["output"] for k, v in block.items()}
    for bicep_name in ("emlDropSftpHost", "emlDropSftpUser", "emlDropsContainer"):
        assert bicep_name in bicep_json["outputs"] and snake_case(bicep_name) in outputs
    assert '"${emlDropStorageAccountName}.${emlDropUserName}"' in json.dumps(bicep_json["outputs"]["emlDropSftpUser"])
    assert "${local.eml_drop_storage_account_name}.${var.eml_drop_user_name}" in outputs["eml_drop_sftp_user"]["value"]
