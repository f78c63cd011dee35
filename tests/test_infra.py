"""The Bicep and Terraform templates deploy what the code uses, and only that.

Every queue, container and app setting the code reads (derived from shared/settings.py: the queue
constants, the container defaults, ``Settings.model_fields`` with their environment names) must be
created or set by BOTH templates, and the templates may set nothing the code does not read except
the Functions platform's own settings, listed below with the reason for each.

The templates are parsed by python-hcl2 and pycep-parser, which live in their own virtualenvs
(.venv-infra/, made by scripts/infra-check: python-hcl2 clashes with checkov's hcl2 fork). This
module runs them through infra/scripts/parse_templates.py and skips, saying so, when they are not
installed.
"""

from __future__ import annotations

import copy
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
}

# Settings the Functions platform reads, which the code does not; both templates must set them.
# (If the code starts reading one, move it out of here: test_the_exception_lists_name_real_settings
# says so. The storage service URIs moved out when the code began reading them for national clouds.)
# Not FUNCTIONS_EXTENSION_VERSION / FUNCTIONS_WORKER_RUNTIME: Flex Consumption takes the runtime
# from functionAppConfig and rejects those settings.
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__credential": "identity-based host storage: 'managedidentity'",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "where the host sends telemetry",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "keyless ingestion with the managed identity (local auth is off)",
}

# Containers the platform uses, which the code does not.
PLATFORM_CONTAINERS = {"app-package": "the Flex Consumption deployment package (functionAppConfig.deployment)"}

# The only data roles the app's identity may hold (least privilege; each is justified in the templates).
IDENTITY_ROLES = {
    "Storage Blob Data Owner",
    "Storage Queue Data Contributor",
    "Key Vault Secrets User",
    "Monitoring Metrics Publisher",
}
ROLE_NAMES_BY_ID = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}


# --- What the code uses --------------------------------------------------------------------------


def env_name(name: str, info) -> str:
    alias = info.validation_alias
    return alias if isinstance(alias, str) else name.upper()


def code_settings() -> dict[str, str]:
    """Environment name -> field name, for every setting Settings reads."""
    return {env_name(name, info): name for name, info in Settings.model_fields.items()}


def code_queues() -> set[str]:
    return {value for name, value in vars(settings_module).items() if name.endswith("_QUEUE")}


def code_containers() -> set[str]:
    return {Settings.model_fields["records_container"].default, Settings.model_fields["state_container"].default}


@dataclass
class Deployment:
    """What one template creates or sets, with values resolved where they are literals."""

    name: str
    queues: set[str] = field(default_factory=set)
    containers: set[str] = field(default_factory=set)
    settings: dict[str, object] = field(default_factory=dict)
    identity_roles: set[str] = field(default_factory=set)
    setting_defaults: dict[str, object] = field(default_factory=dict)  # setting -> default of the parameter behind it


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

    compare("queue", code_queues(), deployment.queues)
    compare("container", code_containers() | set(PLATFORM_CONTAINERS), deployment.containers)
    # pydantic-settings reads names case-insensitively; App Service settings are exact. Compare exact.
    compare("app setting", expected_settings(), set(deployment.settings))
    for setting in ("RECORDS_CONTAINER", "STATE_CONTAINER"):
        value = deployment.settings.get(setting)
        if setting in deployment.settings and value not in deployment.containers:
            problems.append(f"{name}: {setting}={value!r} names no container the template creates")
    return problems


def template_differences(bicep: Deployment, terraform: Deployment) -> list[str]:
    problems = []
    for kind in ("queues", "containers", "identity_roles"):
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

    def names(resource_type: str) -> set[str]:
        found = set()
        for resource in resources.values():
            if resource["type"] != resource_type:
                continue
            config = resource["config"]
            if "loop_type" in config:  # [for x in <array variable>: {...}]
                array = resolve(config["loop_type"]["detail"]["array_name"])
                found |= {resolve(item) for item in array}
            else:
                found.add(resolve(config["name"]))
        return found

    deployment = Deployment(
        "bicep",
        queues=names("Microsoft.Storage/storageAccounts/queueServices/queues"),
        containers=names("Microsoft.Storage/storageAccounts/blobServices/containers"),
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
    for resource in resources.values():
        if resource["type"] == "Microsoft.Authorization/roleAssignments":
            properties = resource["config"]["properties"]
            if "identity" in strings_in(properties["principalId"]):
                role_ids = [resolve(s) for s in strings_in(properties["roleDefinitionId"])]
                deployment.identity_roles |= {ROLE_NAMES_BY_ID.get(r, r) for r in role_ids if r in ROLE_NAMES_BY_ID}
    return deployment


# --- Reading the parsed Terraform ----------------------------------------------------------------

_INTERPOLATION = re.compile(r"^\$\{(.*)\}$", re.DOTALL)


def tf_literal(value):
    """'"text"' -> 'text'; other values (expressions "${...}", numbers, bools) unchanged."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"' and "${" not in value:
        return value[1:-1]
    return value


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

    def names(resource_type: str) -> set[str]:
        found = set()
        for block_type, _, body in resources:
            if block_type != resource_type:
                continue
            name = tf_literal(body["name"])
            if name in ("${each.value}", "${each.key}"):
                for_each = re.fullmatch(r"\$\{toset\((.+)\)\}", body["for_each"])
                assert for_each, f"{resource_type}: for_each must be toset(<list>)"
                found |= {resolve(item) for item in resolve("${" + for_each.group(1) + "}")}
            else:
                found.add(resolve(name))
        return found

    deployment = Deployment(
        "terraform", queues=names("azurerm_storage_queue"), containers=names("azurerm_storage_container")
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
    for block_type, _, body in resources:
        if block_type == "azurerm_role_assignment" and "azurerm_user_assigned_identity.app." in body["principal_id"]:
            deployment.identity_roles.add(tf_literal(body["role_definition_name"]))
    return deployment


# --- The tests -----------------------------------------------------------------------------------


def test_the_exception_lists_name_real_settings():
    # An entry for a setting that no longer exists would hide nothing, but would mislead.
    assert set(NOT_DEPLOYED) <= set(code_settings())
    assert not set(PLATFORM_SETTINGS) & set(code_settings())
    assert code_queues() >= {"listing", "items", "transcripts", "listing-poison", "items-poison", "transcripts-poison"}


def test_bicep_creates_and_sets_exactly_what_the_code_uses(bicep_json):
    assert consistency_problems(bicep_deployment(bicep_json)) == []


def test_terraform_creates_and_sets_exactly_what_the_code_uses(terraform_json):
    assert consistency_problems(terraform_deployment(terraform_json)) == []


def test_both_templates_deploy_the_same(bicep_json, terraform_json):
    bicep, terraform = bicep_deployment(bicep_json), terraform_deployment(terraform_json)
    assert template_differences(bicep, terraform) == []
    assert bicep.identity_roles == terraform.identity_roles == IDENTITY_ROLES


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
    compared = {name: default for name, default in deployment.setting_defaults.items() if name in code_settings()}
    assert len(compared) >= 25, sorted(compared)  # every tunable setting has a parameter
    different = {name: (default, _code_default(name)) for name, default in compared.items()
                 if not _same(default, _code_default(name))}
    assert different == {}


def test_secrets_are_key_vault_references(bicep_json, terraform_json):
    for deployment in (bicep_deployment(bicep_json), terraform_deployment(terraform_json)):
        for setting in ("TELEMESSAGE_USERNAME", "TELEMESSAGE_PASSWORD"):
            value = deployment.settings[setting]
            assert isinstance(value, str) and "@Microsoft.KeyVault(SecretUri=" in value, (deployment.name, setting)
        assert "@Microsoft.KeyVault(SecretUri=" in json.dumps(deployment.settings["GRAPH_CERTIFICATE"])


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
