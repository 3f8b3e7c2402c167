"""Cold start: the import of each function's handler module in a fresh process, against a fresh `import boto3`.

Each sample is one new interpreter that puts the function's folder and the layer on sys.path (as Lambda does
with /var/task and /opt/python), gets the function's environment from template.yaml, and times only the import
with perf_counter; interpreter start-up is the same for every process and is left out. Runs are interleaved
(one of each target per round) so that a noisy moment of the machine touches every target alike.

Every child sees only the packages the layer ships (layers/common/requirements.txt and what they require), as
/opt/python holds in Lambda: the development environment has more (click, rich, pygments for the CLI), and some
runtime packages import them when they are there (httpx's command line: about 50 ms more here).
"""

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

import boto3
from moto import mock_aws
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from devstack.cloudformation import REGION, Stack, provision

ROOT = Path(__file__).resolve().parent.parent
RUNS = 10
TARGET_RATIO = 1.5
# Cold start as Lambda pays it (issue 12): the import and the first invocation's composition, against
# `import boto3` and the same boto3 clients built.
TARGET_READY_RATIO = 1.3
FLOOR_MODULE = "boto3"
LAYER_REQUIREMENTS = ROOT / "layers" / "common" / "requirements.txt"
# First in every timer: the top-level modules of packages the layer does not ship cannot be imported. A plain
# finder class (importlib.abc would import importlib.resources, which boto3 then finds loaded).
_LAYER_ONLY = (
    "import os, sys\n"
    "class _NotInTheLayer:\n"
    "    hidden = frozenset(os.environ.pop('BENCH_NOT_IN_LAYER', '').split(','))\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.partition('.')[0] in self.hidden:\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, _NotInTheLayer())\n"
)
_IMPORT_TIMER = _LAYER_ONLY + (
    "import importlib, sys, time\n"
    "sys.path[:0] = sys.argv[2:]\n"
    "started = time.perf_counter()\n"
    "importlib.import_module(sys.argv[1])\n"
    "print(time.perf_counter() - started)\n"
)
# The same, then what the first invocation adds: each composition factory the handler module imports is called
# (it imports its services and adapters and creates the boto3 clients; nothing is sent to AWS).
_READY_TIMER = _LAYER_ONLY + (
    "import importlib, sys, time\n"
    "sys.path[:0] = sys.argv[3:]\n"
    "started = time.perf_counter()\n"
    "importlib.import_module(sys.argv[1])\n"
    "composition = importlib.import_module('avatarjobs.composition')\n"
    "for name in filter(None, sys.argv[2].split(',')):\n"
    "    getattr(composition, name)()\n"
    "seconds = time.perf_counter() - started\n"
    "from avatarjobs.adapters import aws_clients\n"
    "built = [n for n, f in vars(aws_clients).items() if hasattr(f, 'cache_info') and f.cache_info().currsize]\n"
    "print(','.join(sorted(built)))\n"
    "print(seconds)\n"
)
# The ready floor: a fresh `import boto3`, then the boto3 clients the function's ready process built.
_CLIENTS_FLOOR_TIMER = _LAYER_ONLY + (
    "import sys, time\n"
    "started = time.perf_counter()\n"
    "import boto3\n"
    "for service in filter(None, sys.argv[1].split(',')):\n"
    "    boto3.client(service)\n"
    "print(time.perf_counter() - started)\n"
)
# What the Lambda runtime itself sets (besides the template's variables); the function name matters:
# Powertools' Tracer only patches and imports the X-Ray SDK when it believes it runs in Lambda.
_LAMBDA_VARIABLES = {
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
    "LAMBDA_TASK_ROOT": "/var/task",
}
# Known heavy imports a handler may not need at import time, and how to stop paying for them.
AVOIDABLE = {
    "aws_lambda_powertools.event_handler.openapi": "OpenAPI/validation models of the resolver: validate with the "
    "pydantic models directly, or build the OpenAPI document only in tests (tests.openapi_document)",
    "pydantic": "pydantic models built at import: import the request/response models inside the handlers that "
    "use them, or defer with a lazy module attribute",
    "aws_xray_sdk": "the X-Ray SDK imported and patched by Tracer: Tracer(auto_patch=False) and patch only "
    "boto3/httpx lazily, or rely on Lambda's active tracing without the SDK",
    "nacl": "PyNaCl (libsodium) for the fal signature: import it inside the verifier on first use (only the "
    "webhook function verifies)",
    "httpx": "httpx/httpcore for provider calls: import inside the provider adapters on first use",
    "aws_lambda_powertools.utilities.parameters": "Powertools parameters (Secrets Manager): import inside "
    "provider_key() on the secret path only",
    "aws_lambda_powertools.utilities.batch": "the batch processor, the first Powertools import of these handlers "
    "(so its figure also carries Powertools' Logger and JMESPath); the avoidable part is asyncio (for the async "
    "processor) and every event data class: a small partial-batch loop of our own over the plain record dicts",
    "ulid": "ULID generation: import where ids are made",
    "yaml": "YAML parsing has no place in a handler's import",
}


@dataclass(frozen=True)
class HandlerModule:
    """A function of template.yaml reduced to what a fresh process needs to import its handler."""

    logical_id: str
    module: str
    search_path: tuple[str, ...]  # the function's folder, then its layers
    environment: dict[str, str]
    factories: tuple[str, ...]  # the composition factories the handler module imports


def _composition_factories(handler_file: Path) -> tuple[str, ...]:
    tree = ast.parse(handler_file.read_text())
    return tuple(
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "avatarjobs.composition"
        for alias in node.names
    )


@dataclass(frozen=True)
class ImportTiming:
    name: str
    samples_ms: tuple[float, ...]

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms)


@dataclass(frozen=True)
class ImportOffender:
    module: str
    depth: int  # nesting in the import tree: 1 is imported by the handler module itself
    cumulative_ms: float
    self_ms: float


@dataclass(frozen=True)
class ColdStartResult:
    floor: ImportTiming
    functions: dict[str, ImportTiming]
    ready: dict[str, ImportTiming]  # import, then the first invocation's composition
    ready_floor: dict[str, ImportTiming]  # import boto3, then the same boto3 clients
    clients: dict[str, tuple[str, ...]]  # the boto3 clients each function's first invocation builds
    offenders: dict[str, list[ImportOffender]]  # the two slowest functions, slowest first
    avoidable: dict[str, list[tuple[str, float, str]]]  # every function -> (package, cumulative ms, plan)
    runs: int

    def ratio(self, logical_id: str) -> float:
        return self.functions[logical_id].min_ms / self.floor.min_ms

    def met(self, logical_id: str) -> bool:
        return self.ratio(logical_id) <= TARGET_RATIO

    def ready_ratio(self, logical_id: str) -> float:
        return self.ready[logical_id].min_ms / self.ready_floor[logical_id].min_ms

    def ready_met(self, logical_id: str) -> bool:
        return self.ready_ratio(logical_id) <= TARGET_READY_RATIO


def handler_modules() -> list[HandlerModule]:
    """Every function of template.yaml: CodeUri, Handler, Layers and Environment resolved as SAM would."""
    # The environment holds Refs to tables and queues: an empty mocked account resolves them to real-shaped
    # names. Nothing is called at import, so the child processes need no AWS at all.
    with mock_aws():
        stack: Stack = provision(boto3.Session(region_name=REGION))
    modules: list[HandlerModule] = []
    for logical_id, spec in stack.functions().items():
        module = spec.handler.rsplit(".", 1)[0]
        search_path = tuple(str(ROOT / uri) for uri in (spec.code_uri, *spec.layer_uris))
        environment = {**stack.function_environment(logical_id), "AWS_LAMBDA_FUNCTION_NAME": spec.name}
        factories = _composition_factories(ROOT / spec.code_uri / (module.replace(".", "/") + ".py"))
        modules.append(HandlerModule(logical_id, module, search_path, environment, factories))
    return modules


@cache
def modules_not_in_the_layer() -> frozenset[str]:
    """Top-level modules installed here whose distribution is neither a layer requirement nor required by one
    (with the extras the layer asks for)."""
    shipped: set[str] = set()
    waiting = [Requirement(line) for line in LAYER_REQUIREMENTS.read_text().splitlines() if line.split("#")[0].strip()]
    while waiting:
        requirement = waiting.pop()
        name = canonicalize_name(requirement.name)
        if name in shipped:
            continue
        shipped.add(name)
        try:
            needs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in needs:
            need = Requirement(text)
            extras = requirement.extras or {""}
            if need.marker is None or any(need.marker.evaluate({"extra": extra}) for extra in extras):
                waiting.append(need)
    return frozenset(
        module
        for module, distributions in metadata.packages_distributions().items()
        if not any(canonicalize_name(distribution) in shipped for distribution in distributions)
    )


def _child_environment(variables: dict[str, str]) -> dict[str, str]:
    # Built from scratch: PYTHONPATH from `make bench` would put the repository on every child's path.
    base = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    hidden = {"BENCH_NOT_IN_LAYER": ",".join(sorted(modules_not_in_the_layer()))}
    return {**base, **_LAMBDA_VARIABLES, **variables, **hidden}


def _timed(timer: list[str], environment: dict[str, str]) -> list[str]:
    """The lines a timer child prints (its last one: the seconds it measured)."""
    completed = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-c", *timer],
        env=_child_environment(environment),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return completed.stdout.strip().splitlines()


def _timed_import(module: str, search_path: tuple[str, ...], environment: dict[str, str]) -> float:
    """Milliseconds to import `module`."""
    return float(_timed([_IMPORT_TIMER, module, *search_path], environment)[-1]) * 1000


def _timed_ready(target: HandlerModule) -> tuple[float, tuple[str, ...]]:
    """Milliseconds to import the handler and build its use cases, and the boto3 clients that built."""
    *_, clients, seconds = _timed(
        [_READY_TIMER, target.module, ",".join(target.factories), *target.search_path], target.environment
    )
    return float(seconds) * 1000, tuple(filter(None, clients.split(",")))


def _timed_clients_floor(clients: tuple[str, ...], environment: dict[str, str]) -> float:
    return float(_timed([_CLIENTS_FLOOR_TIMER, ",".join(clients)], environment)[-1]) * 1000


def _import_tree(target: HandlerModule) -> list[ImportOffender]:
    """`python -X importtime -c "import app"`, parsed: every module with its self and cumulative time."""
    environment = {**target.environment, "PYTHONPATH": os.pathsep.join(target.search_path)}
    completed = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-X", "importtime", "-c", f"{_LAYER_ONLY}import {target.module}"],
        env=_child_environment(environment),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    # "import time:       412 |      10592 |     aws_lambda_powertools": two spaces of indent per level.
    line = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")
    tree: list[ImportOffender] = []
    for text in completed.stderr.splitlines():
        match = line.match(text)
        if match:
            self_us, cumulative_us, indent, name = match.groups()
            depth = (len(indent) - 1) // 2
            tree.append(ImportOffender(name, depth, int(cumulative_us) / 1000, int(self_us) / 1000))
    return tree


def _top_offenders(tree: list[ImportOffender], module: str, count: int = 10) -> list[ImportOffender]:
    below_handler = [entry for entry in tree if entry.module != module]
    return sorted(below_handler, key=lambda entry: entry.cumulative_ms, reverse=True)[:count]


def _avoidable(tree: list[ImportOffender]) -> list[tuple[str, float, str]]:
    """The known-avoidable packages this handler imports, with the time of their first (outermost) import."""
    found: list[tuple[str, float, str]] = []
    for package, plan in AVOIDABLE.items():
        entries = [entry for entry in tree if entry.module == package or entry.module.startswith(package + ".")]
        if entries:
            outermost = min(entries, key=lambda entry: entry.depth)
            cumulative = max(entry.cumulative_ms for entry in entries if entry.depth == outermost.depth)
            found.append((package, cumulative, plan))
    return sorted(found, key=lambda item: item[1], reverse=True)


def measure(runs: int = RUNS, slowest: int = 2) -> ColdStartResult:
    targets = handler_modules()
    floor_environment = targets[0].environment if targets else {}
    floor_samples: list[float] = []
    samples: dict[str, list[float]] = {target.logical_id: [] for target in targets}
    ready_samples: dict[str, list[float]] = {target.logical_id: [] for target in targets}
    ready_floor_samples: dict[str, list[float]] = {target.logical_id: [] for target in targets}
    clients: dict[str, tuple[str, ...]] = {}
    for _ in range(runs):
        floor_samples.append(_timed_import(FLOOR_MODULE, (), floor_environment))
        for target in targets:
            samples[target.logical_id].append(_timed_import(target.module, target.search_path, target.environment))
            ready_ms, clients[target.logical_id] = _timed_ready(target)
            ready_samples[target.logical_id].append(ready_ms)
            ready_floor_samples[target.logical_id].append(
                _timed_clients_floor(clients[target.logical_id], target.environment)
            )
    functions = {name: ImportTiming(name, tuple(values)) for name, values in samples.items()}
    ready = {name: ImportTiming(name, tuple(values)) for name, values in ready_samples.items()}
    ready_floor = {name: ImportTiming(name, tuple(values)) for name, values in ready_floor_samples.items()}
    by_time = sorted(targets, key=lambda target: functions[target.logical_id].min_ms, reverse=True)
    slowest_ids = [target.logical_id for target in by_time[:slowest]]
    offenders: dict[str, list[ImportOffender]] = {}
    avoidable: dict[str, list[tuple[str, float, str]]] = {}
    # The avoidable imports of every function: the slowest two are within noise of the rest, and what only one
    # function imports (the API's OpenAPI models) must not drop out of the plan with the ranking.
    for target in by_time:
        tree = _import_tree(target)
        if target.logical_id in slowest_ids:
            offenders[target.logical_id] = _top_offenders(tree, target.module)
        avoidable[target.logical_id] = _avoidable(tree)
    floor = ImportTiming(FLOOR_MODULE, tuple(floor_samples))
    return ColdStartResult(floor, functions, ready, ready_floor, clients, offenders, avoidable, runs)


if __name__ == "__main__":
    result = measure()
    print(f"floor (import boto3): {result.floor.min_ms:.1f} ms")
    for name, timing in result.functions.items():
        verdict = "met" if result.met(name) else "NOT met"
        ready, ready_floor = result.ready[name].min_ms, result.ready_floor[name].min_ms
        ready_verdict = "met" if result.ready_met(name) else "NOT met"
        print(
            f"{name}: {timing.min_ms:.1f} ms, {result.ratio(name):.2f}x, {verdict}; ready {ready:.1f} ms against "
            f"{ready_floor:.1f} ms ({', '.join(result.clients[name]) or 'no clients'}), "
            f"{result.ready_ratio(name):.2f}x, {ready_verdict}"
        )
