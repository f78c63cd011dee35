"""azure.yaml: `azd up` deploys infra/bicep/main.bicep and publishes the app (issue 19, item 8).

azd's published JSON schema for azure.yaml (schemas/v1.0/azure.yaml.json in the Azure/azure-dev
repository) ships in no package of PyPI or npm, the only registries this project installs from, and
a test fetches nothing. So this module encodes the rules of that schema which azure.yaml touches,
as azd's reference states them ("Azure Developer CLI's azure.yaml schema", azd-schema on Microsoft
Learn), and checks the file against them:

- top level: ``name`` is required, 2 characters or more, lowercase letters, digits and hyphens,
  starting and ending with a letter or digit; the documented properties only (the schema allows
  others; here an unknown key is a typo);
- ``infra``: ``provider`` bicep or terraform (default bicep), ``path`` (default infra) and
  ``module`` (default main) name the template; ``layers`` excludes both;
- ``services``: at least one; each needs ``host``; the hosts appservice, function, springapp and
  staticwebapp need ``project`` and take no ``image``, ``docker``, ``k8s``, ``apiVersion`` or
  ``env``; ``remoteBuild`` is a boolean and only for host function; ``language`` is one of the
  documented languages;
- ``hooks``: named pre or post and an azd command; a hook is an object or a list of them, with
  ``shell`` sh or pwsh and a ``run``, or with ``windows`` and ``posix`` variants and nothing else.

What azd does with the file, from its documentation ("Deploy to Azure Functions with the Azure
Developer CLI", "Configure service packaging file exclusions", "Resource group scoped deployments")
and from its Bicep provider (cli/azd/pkg/infra/provisioning/bicep in Azure/azure-dev):

- host function deploys the project as a zip; the function app is found by the tag
  ``azd-service-name`` or, as here, by ``resourceName`` (environment variables substituted);
  ``remoteBuild`` applies to Flex Consumption apps;
- without a .funcignore, a Python package leaves out only ``__pycache__`` and virtual environments;
- azd reads ``<module>.parameters.json`` beside the template, substitutes ``${VAR}`` from the azd
  environment and drops a parameter whose variable is unset; it asks for a parameter left without a
  value and without a default (``@secure()`` answers go to its user vault), and nothing but that file
  can change a parameter that has a default; each output is saved in the environment under its name.

Two checks are marked xfail, with the reason, while a file they need is missing (once it exists they
run as ordinary checks): infra/bicep/main.parameters.json, without
which the first deployment cannot leave out the Event Grid subscription (docs/deploy.md, section
11) and the commands of section 0 set nothing; and .funcignore, without which azd would publish the
whole repository (node_modules, .git, a local.settings.json) instead of what section 4 publishes.

YAML is read with PyYAML and the template with pycep-parser, both in .venv-infra/checkov (made by
scripts/infra-check, as for tests/test_infra.py); without it the module skips, saying so.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
AZURE_YAML = REPO_ROOT / "azure.yaml"
DEPLOY_DOC = REPO_ROOT / "docs" / "deploy.md"
FUNCIGNORE = REPO_ROOT / ".funcignore"
INFRA_PYTHON = REPO_ROOT / ".venv-infra" / "checkov" / "bin" / "python"  # PyYAML and pycep-parser
TEMPLATE_PARSER = REPO_ROOT / "infra" / "scripts" / "parse_templates.py"
SECTION_0 = "## 0. The shortest path: `azd up`"

# --- The rules of azd's schema (v1.0) that azure.yaml touches --------------------------------------

NAME_PATTERN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
TOP_LEVEL = {"name", "resourceGroup", "metadata", "infra", "services", "resources", "pipeline", "hooks",
             "requiredVersions", "state", "platform", "workflows", "cloud"}
INFRA_KEYS = {"provider", "path", "module", "layers"}
PROVIDERS = {"bicep", "terraform"}
SERVICE_KEYS = {"apiVersion", "resourceGroup", "resourceName", "project", "image", "host", "language", "module",
                "dist", "remoteBuild", "docker", "k8s", "config", "uses", "env", "hooks"}
HOSTS = {"appservice", "containerapp", "function", "springapp", "staticwebapp", "aks", "ai.endpoint"}
CODE_HOSTS = {"appservice", "function", "springapp", "staticwebapp"}  # need project; no container settings
NOT_FOR_CODE_HOSTS = {"image", "docker", "k8s", "apiVersion", "env"}
LANGUAGES = {"dotnet", "csharp", "fsharp", "py", "python", "js", "ts", "java", "go", "golang", "docker"}
COMMAND_HOOKS = {f"{when}{command}" for when in ("pre", "post") for command in
                 ("provision", "infracreate", "infradelete", "down", "up", "package", "publish", "deploy", "restore")}
SERVICE_HOOKS = {f"{when}{step}" for when in ("pre", "post") for step in ("deploy", "restore", "build", "package",
                                                                         "publish")}
HOOK_KEYS = {"shell", "kind", "dir", "run", "continueOnError", "interactive", "windows", "posix", "secrets", "config"}
SHELLS = {"sh", "pwsh"}
PARAMETERS_FILE_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#"

# --- Parsing (in .venv-infra/checkov) ------------------------------------------------------------

LOAD_YAML = ("import json, sys, yaml\n"
             "json.dump(yaml.safe_load(open(sys.argv[1], encoding='utf-8')), sys.stdout, default=str)")


def infra_python(*args: str) -> str:
    if not INFRA_PYTHON.exists():
        if os.environ.get("INFRA_CHECK"):  # scripts/infra-check made the virtualenv: missing is an error
            pytest.fail(f"{INFRA_PYTHON} is missing")
        pytest.skip("PyYAML and pycep-parser are not installed in .venv-infra/checkov: run scripts/infra-check, "
                    "which creates it")
    result = subprocess.run([str(INFRA_PYTHON), *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{args[-1]} does not parse:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def project() -> dict:
    loaded = json.loads(infra_python("-c", LOAD_YAML, str(AZURE_YAML)))
    assert isinstance(loaded, dict), "azure.yaml is not a mapping"
    return loaded


@pytest.fixture(scope="module")
def service(project) -> tuple[str, dict]:
    services = project["services"]
    assert len(services) == 1, f"one service, the function app: {sorted(services)}"
    return next(iter(services.items()))


def template_path(project: dict) -> Path:
    infra = project.get("infra", {})
    return AZURE_YAML.parent / infra.get("path", "infra") / f"{infra.get('module', 'main')}.bicep"


@pytest.fixture(scope="module")
def template(project) -> dict:
    return json.loads(infra_python(str(TEMPLATE_PARSER), "bicep", str(template_path(project))))


def parameters_file(project: dict) -> Path:
    return template_path(project).with_suffix(".parameters.json")


def is_secure(parameter: dict) -> bool:
    return any(decorator.get("type") == "secure" for decorator in parameter.get("decorators", []))


def has_default(parameter: dict) -> bool:
    return parameter.get("default") is not None  # pycep-parser: None when the parameter has no default


def upper_snake(name: str) -> str:
    """archiveSchedule -> ARCHIVE_SCHEDULE: the azd environment variable of a template parameter."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


def accessor(value) -> tuple[str, str] | None:
    """`symbol.property` in the parsed template, as (symbol, property)."""
    operator = value.get("operator", {}) if isinstance(value, dict) else {}
    if operator.get("type") != "property_accessor":
        return None
    return operator["operands"]["operand_1"], operator["operands"]["operand_2"]


def section(heading: str) -> str:
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    assert heading in text, f"docs/deploy.md has no section {heading!r}"
    return text.split(heading, 1)[1].split("\n## ", 1)[0]


def published_files() -> set[str]:
    """What docs/deploy.md, section 4, publishes: the paths of its `git archive` command."""
    match = re.search(r"git archive --format zip --output \S+ HEAD ([^\n]+)", section("## 4. Publish the code"))
    assert match, "section 4 has no git archive command"
    return {path.rstrip("/") for path in match.group(1).split()}


# --- The schema's rules ----------------------------------------------------------------------------


def test_the_top_level_follows_the_schema(project):
    assert isinstance(project.get("name"), str), "name is required"
    assert len(project["name"]) >= 2 and NAME_PATTERN.fullmatch(project["name"]), project["name"]
    assert set(project) <= TOP_LEVEL, f"not in azd's schema: {sorted(set(project) - TOP_LEVEL)}"


def test_infra_is_the_bicep_template(project):
    infra = project.get("infra", {})
    assert set(infra) <= INFRA_KEYS, f"not in azd's schema: {sorted(set(infra) - INFRA_KEYS)}"
    assert infra.get("provider", "bicep") in PROVIDERS
    assert not ("layers" in infra and ({"path", "module"} & set(infra))), "layers excludes path and module"
    assert infra.get("provider", "bicep") == "bicep", "azd drives the Bicep template; Terraform is docs section 2b"
    assert template_path(project).resolve() == (REPO_ROOT / "infra" / "bicep" / "main.bicep").resolve()


def test_services_follow_the_schema(project):
    services = project.get("services")
    assert isinstance(services, dict) and services, "at least one service"
    for name, config in services.items():
        assert set(config) <= SERVICE_KEYS, f"{name}: not in azd's schema: {sorted(set(config) - SERVICE_KEYS)}"
        assert config.get("host") in HOSTS, f"{name}: host {config.get('host')!r}"
        assert config.get("language", "python") in LANGUAGES, f"{name}: language {config.get('language')!r}"
        if config["host"] in CODE_HOSTS:
            assert "project" in config, f"{name}: host {config['host']} needs project"
            assert not NOT_FOR_CODE_HOSTS & set(config), f"{name}: {sorted(NOT_FOR_CODE_HOSTS & set(config))}"
        if "remoteBuild" in config:
            assert config["host"] == "function" and isinstance(config["remoteBuild"], bool), name
        if "project" in config:
            assert (AZURE_YAML.parent / config["project"]).is_dir(), f"{name}: no folder {config['project']}"
        for hook, spec in config.get("hooks", {}).items():
            assert hook in SERVICE_HOOKS, f"{name}: no service hook {hook}"
            check_hook(f"{name}.{hook}", spec)


def check_hook(where: str, spec) -> None:
    for hook in spec if isinstance(spec, list) else [spec]:
        assert isinstance(hook, dict) and set(hook) <= HOOK_KEYS, f"{where}: {hook}"
        if {"windows", "posix"} <= set(hook):
            assert set(hook) == {"windows", "posix"}, f"{where}: with windows and posix, nothing else"
            for variant in ("windows", "posix"):
                check_hook(f"{where}.{variant}", hook[variant])
            continue
        assert isinstance(hook.get("run"), str) and hook["run"].strip(), f"{where}: run is required"
        assert hook.get("shell", "sh") in SHELLS, f"{where}: shell {hook.get('shell')!r}"


def test_hooks_follow_the_schema(project):
    for hook, spec in project.get("hooks", {}).items():
        assert hook in COMMAND_HOOKS, f"no azd command hook {hook}"
        check_hook(hook, spec)


# --- What azd does with it -------------------------------------------------------------------------


def test_the_service_is_the_python_function_app(service, template):
    name, config = service
    assert config["host"] == "function" and config.get("language") in {"python", "py"}
    app_root = AZURE_YAML.parent / config["project"]
    for path in published_files():
        assert (app_root / path).exists(), f"{name}: {path} (docs/deploy.md, section 4) is not in the project"
    sites = [r for r in template["resources"].values() if r["type"] == "Microsoft.Web/sites"]
    assert len(sites) == 1, "one function app in the template"
    runtime = sites[0]["config"]["properties"]["functionAppConfig"]["runtime"]
    assert runtime["name"] == "python", runtime
    assert config.get("remoteBuild") is True, "the platform builds requirements.txt, as section 4 publishes"


def test_the_service_finds_the_flex_consumption_app(service, template):
    name, config = service
    resources = template["resources"]
    if "resourceName" in config:  # by name: an output that is the function app's name
        match = re.fullmatch(r"\$\{(\w+)\}", config["resourceName"])
        assert match, f"{name}: resourceName should be one output of the template, as ${{output}}"
        output = template["outputs"].get(match.group(1))
        assert output, f"{name}: the template has no output {match.group(1)} for azd to save"
        symbol, prop = accessor(output["value"]) or (None, None)
        assert prop == "name" and resources[symbol]["type"] == "Microsoft.Web/sites", output
    else:  # by tag
        tagged = [symbol for symbol, r in resources.items()
                  if (r["config"].get("tags") or {}).get("azd-service-name") == name]
        assert len(tagged) == 1, f"{name}: no resourceName, so one resource needs the tag azd-service-name: {name}"
        symbol = tagged[0]
    app = resources[symbol]
    assert "functionapp" in app["config"]["kind"], app["config"]["kind"]
    plan_symbol, _ = accessor(app["config"]["properties"]["serverFarmId"])
    sku = resources[plan_symbol]["config"]["sku"]
    assert sku == {"name": "FC1", "tier": "FlexConsumption"}, sku


def test_azd_down_is_refused(project):
    for hook in ("predown", "preinfradelete"):
        spec = project.get("hooks", {}).get(hook)
        assert spec, f"azure.yaml has no {hook} hook: azd down would delete the archive's resource group"
        for variant in ("posix", "windows"):
            run = spec[variant]["run"]
            assert re.search(r"\bexit 1\s*$", run) and "continueOnError" not in spec[variant], (hook, variant, run)


def test_every_required_parameter_gets_a_value(project, template):
    """From the parameters file, where it maps the parameter, or else from azd's prompt."""
    path = parameters_file(project)
    mapped = json.loads(path.read_text(encoding="utf-8"))["parameters"] if path.exists() else {}
    required = {name for name, parameter in template["parameters"].items() if not has_default(parameter)}
    assert required, "the template has required parameters"
    for name in sorted(required):
        if name in mapped:
            continue
        # azd prompts for it (no default, not in the file) and keeps the answer; secure ones in its vault.
        assert template["parameters"][name]["type"] in {"string", "int", "bool"}, name


def test_the_parameters_file_maps_each_parameter_to_its_variable(project, template):
    """Every parameter but location and the two credentials azd asks for is `${UPPER_SNAKE}`."""
    path = parameters_file(project)
    if not path.exists():
        pytest.skip(f"no {path.relative_to(REPO_ROOT)}: see test_the_first_deployment_leaves_out_event_subscriptions")
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document.get("$schema") == PARAMETERS_FILE_SCHEMA and document.get("contentVersion") == "1.0.0.0"
    parameters = template["parameters"]
    assert set(document["parameters"]) <= set(parameters), sorted(set(document["parameters"]) - set(parameters))
    for name, entry in document["parameters"].items():
        # One variable each and no fallback: an unset variable leaves the template's default in force.
        assert entry == {"value": f"${{{upper_snake(name)}}}"}, (name, entry)
    # location follows the resource group; a secure parameter without a default is asked for and kept in
    # azd's vault, never in .azure/<environment>/.env.
    expected = {name for name, parameter in parameters.items()
                if name != "location" and not (is_secure(parameter) and not has_default(parameter))}
    assert set(document["parameters"]) == expected, (sorted(expected - set(document["parameters"])),
                                                     sorted(set(document["parameters"]) - expected))


# --- docs/deploy.md, section 0 ---------------------------------------------------------------------


def env_sets(text: str) -> list[tuple[str, str]]:
    return re.findall(r"^azd env set (\w+) (\S+)", text, flags=re.MULTILINE)


@pytest.mark.xfail(condition=not (REPO_ROOT / "infra" / "bicep" / "main.parameters.json").exists(), strict=True,
                   reason="needs infra/bicep/main.parameters.json: azd changes a parameter that has a default "
                          "(deployEventSubscriptions, graphCloud, ...) only through that file")
def test_the_first_deployment_leaves_out_event_subscriptions(project, template):
    path = parameters_file(project)
    mapped = json.loads(path.read_text(encoding="utf-8"))["parameters"]
    variable = upper_snake("deployEventSubscriptions")
    assert "deployEventSubscriptions" in mapped and template["parameters"]["deployEventSubscriptions"]["type"] == "bool"
    text = section(SECTION_0)
    steps = [line.split("#")[0].strip() for line in text.splitlines() if line.startswith("azd ")]
    first, then = steps.index(f"azd env set {variable} false"), steps.index(f"azd env set {variable} true")
    assert first < steps.index("azd up") < then < steps.index("azd provision"), steps
    # Every variable section 0 sets is one the file maps (azd's own AZURE_* aside).
    mapped_variables = {upper_snake(name) for name in mapped}
    for variable, _ in env_sets(text):
        assert variable.startswith("AZURE_") or variable in mapped_variables, variable


def test_section_0_names_what_the_template_has(template):
    text = section(SECTION_0)
    parameters, outputs = template["parameters"], template["outputs"]
    for name, variable in re.findall(r"`(\w+)`: `azd env set (\w+)", text):
        assert name in parameters and variable == upper_snake(name), (name, variable)
    for variable, value in env_sets(text):
        names = {upper_snake(name): name for name in parameters}
        if variable in names and variable != "DEPLOY_EVENT_SUBSCRIPTIONS":
            allowed = next((d["argument"] for d in parameters[names[variable]]["decorators"]
                            if d.get("type") == "allowed"), None)
            assert allowed is None or value in allowed, (variable, value, allowed)
    listed = re.search(r"the outputs: ([\w, ]+)", text)
    assert listed, "section 0 names the outputs azd saves"
    for output in filter(None, (o.strip() for o in listed.group(1).split(","))):
        assert output in outputs, f"the template has no output {output}"
    secure_without_default = {n for n, p in parameters.items() if is_secure(p) and not has_default(p)}
    assert secure_without_default == {"telemessageUsername", "telemessagePassword"}, secure_without_default
    assert "TeleMessage user name and password" in text
    for variable in re.findall(r"`azd env set-secret (\w+)", text):  # a Key Vault reference, for a secure parameter
        secure_with_default = {upper_snake(n) for n, p in parameters.items() if is_secure(p) and has_default(p)}
        assert variable in secure_with_default, variable
    package = {path.strip("`/") for path in re.findall(r"`([\w./]+)`", text.split("with a remote build")[0])}
    assert published_files() <= package, "section 0 names what section 4 publishes"


# --- The package ------------------------------------------------------------------------------------


def funcignore_excludes(name: str, is_dir: bool, patterns: list[str]) -> bool:
    """gitignore rules of .funcignore for one entry of the project root (last match wins).

    Enough for the root's entries: a pattern with a slash inside concerns deeper paths and is left
    out of this decision.
    """
    excluded = False
    for raw in patterns:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate, line = line.startswith("!"), line.lstrip("!")
        dir_only, line = line.endswith("/"), line.strip("/")
        if "/" in line or (dir_only and not is_dir):
            continue
        if fnmatch.fnmatchcase(name, line):
            excluded = not negate
    return excluded


@pytest.mark.xfail(condition=not FUNCIGNORE.exists(), strict=True,
                   reason="needs .funcignore: without it azd packages the whole project folder but __pycache__ "
                          "and virtual environments (node_modules, .git, a local.settings.json)")
def test_the_package_is_what_section_4_publishes(service):
    _, config = service
    root = AZURE_YAML.parent / config["project"]
    tracked = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout
    candidates = {line.split("/")[0] for line in tracked.splitlines()} | {entry.name for entry in root.iterdir()}
    candidates |= {"local.settings.json", ".azure", ".env", ".venv", "node_modules", ".git", "tests"}
    patterns = FUNCIGNORE.read_text(encoding="utf-8").splitlines()
    packaged = set()
    for name in candidates:
        path = root / name
        if name in {"__pycache__", ".azure"} or (path / "pyvenv.cfg").exists():
            continue  # azd leaves these out of every Python package
        is_dir = path.is_dir() or name in {".venv", "node_modules", ".git", "tests", ".azure"}
        if not funcignore_excludes(name, is_dir, patterns):
            packaged.add(name)
    assert packaged == published_files(), (sorted(packaged - published_files()), sorted(published_files() - packaged))
