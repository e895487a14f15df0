"""`kubectl ecsr`: watch and steer EcsReinstallSet rollouts from the command line.

Installed as the console script `kubectl-ecsr`, so kubectl finds it on the PATH (plugin discovery):

    kubectl ecsr status [SET] [-n NS] [--watch [--until-done]]
    kubectl ecsr pause SET | resume SET | abort SET --yes
    kubectl ecsr plan SET

kubectl passes no flags to a plugin: like other plugins this one reads KUBECONFIG (or ~/.kube/config) itself,
takes --kubeconfig, --context and -n/--namespace, and defaults to the current context's namespace.

Output is rich (colors, progress bars, live refresh) when stdout is a terminal and plain, stable lines
otherwise; `--format rich|plain` or KUBECTL_ECSR_FORMAT overrides the choice (rich also follows FORCE_COLOR and
TTY_COMPATIBLE). Errors are one line on stderr with exit code 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .rollout import ACKNOWLEDGED_ANNOTATION, Phase
from .rollout import acknowledged as acknowledged_for

try:  # rich comes with the `plugin` extra: the operator (and its image) runs without it
    from . import plugin_render as render
except ImportError:  # pragma: no cover - exercised by the image tier, which has no rich
    render = None  # type: ignore[assignment]

MISSING_EXTRA = "kubectl-ecsr needs the plugin extra for its terminal output: pip install 'ecs-reinstall-operator[plugin]'"

GROUP, VERSION, PLURAL, KIND = "ecs.reinstall.dev", "v1alpha1", "ecsreinstallsets", "EcsReinstallSet"
FORMAT_ENV = "KUBECTL_ECSR_FORMAT"
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# `status --watch --until-done` stops at these phases (Planned: a dry run is over once it reported its plan).
FINAL_PHASES = (Phase.COMPLETED, Phase.ABORTED, Phase.PLANNED, Phase.STALLED)
REQUEST_TIMEOUT = 15
CONFLICT_RETRIES = 5


class PluginError(Exception):
    """What went wrong, in one line for the user (exit code 1)."""


class Transient(PluginError):
    """The API server could not answer now (unreachable, timeout, 429, 5xx): a watch keeps trying."""


class Conflict(PluginError):
    """A compare-and-swap patch met a newer version of the set (409)."""


# --- Kubernetes access ----------------------------------------------------------------------------------------


@dataclass
class Kube:
    """The cluster the plugin talks to, and the namespace it works in."""

    api: Any  # kubernetes.client.CustomObjectsApi
    namespace: str
    server: str

    @classmethod
    def connect(cls, kubeconfig: str | None, context: str | None, namespace: str | None) -> Kube:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        configuration = client.Configuration()
        configuration.retries = 1  # fail fast with a clear message when the API server is unreachable
        path = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        files = [p for p in path.split(os.pathsep) if p]
        default_namespace = "default"
        try:
            if any(Path(p).expanduser().exists() for p in files):
                config.load_kube_config(
                    config_file=path,
                    context=context,
                    client_configuration=configuration,
                    persist_config=False,
                )
                contexts, current = config.list_kube_config_contexts(path)
                if context:
                    current = next((c for c in contexts if c.get("name") == context), current)
                default_namespace = ((current or {}).get("context") or {}).get("namespace") or "default"
            elif not kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):  # a pod: its service account
                config.load_incluster_config(client_configuration=configuration)
                if IN_CLUSTER_NAMESPACE.exists():
                    default_namespace = IN_CLUSTER_NAMESPACE.read_text().strip() or "default"
            else:
                raise PluginError(f"no kubeconfig found at {path}: set KUBECONFIG or pass --kubeconfig")
        except ConfigException as error:
            raise PluginError(f"invalid kubeconfig {path}: {error}") from None
        except OSError as error:
            raise PluginError(f"cannot read kubeconfig {path}: {error}") from None
        api = client.CustomObjectsApi(client.ApiClient(configuration))
        return cls(api=api, namespace=namespace or default_namespace, server=configuration.host)

    def _call(self, what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return function(*args, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        except ApiException as error:
            if error.status == 404 and not self._crd_installed():
                raise PluginError(
                    f"the {KIND} CRD ({PLURAL}.{GROUP}) is not installed in the cluster at {self.server}: "
                    "apply it with `kubectl apply -f crds/` from the ecs-reinstall-operator repository"
                ) from None
            if error.status == 404:
                raise PluginError(f"{what} not found") from None
            if error.status == 409:
                raise Conflict(f"{what} changed meanwhile: {_api_message(error)}") from None
            if error.status == 429 or error.status >= 500:
                raise Transient(f"{what}: {_api_message(error)}") from None
            raise PluginError(f"{what}: {_api_message(error)}") from None
        except HTTPError as error:
            raise Transient(f"cannot reach the Kubernetes API at {self.server}: {_reason(error)}") from None

    def _crd_installed(self) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            found = self.api.get_api_resources(GROUP, VERSION, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status == 404:
                return False
            return True  # cannot tell: report the original error
        return any(r.name == PLURAL for r in found.resources or ())

    def list_sets(self) -> list[dict]:
        found = self._call(
            f"{KIND}s in namespace {self.namespace}",
            self.api.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
        )
        return sorted(found.get("items") or [], key=lambda s: s["metadata"]["name"])

    def get_set(self, name: str) -> dict:
        return self._call(
            f"{KIND} {self.namespace}/{name}",
            self.api.get_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
        )

    def patch_set(self, name: str, patch: Mapping) -> dict:
        """A JSON merge patch (with metadata.resourceVersion in it, a compare-and-swap: 409 on a change)."""
        return self._call(
            f"{KIND} {self.namespace}/{name}",
            self.api.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
            patch,
            _content_type="application/merge-patch+json",
        )


def _api_message(error: Any) -> str:
    import json

    try:
        body = json.loads(error.body or "")
        message = body.get("message") if isinstance(body, dict) else None
    except ValueError:
        message = None
    return f"{error.status} {message or error.reason or 'error'}".strip()


def _reason(error: Exception) -> str:
    reason = getattr(error, "reason", None)
    return str(reason or error).splitlines()[0]


# --- commands ---------------------------------------------------------------------------------------------------


def cmd_status(kube: Kube, args: argparse.Namespace, out: render.Output) -> int:
    def fetch() -> Any:
        if args.set:
            return kube.get_set(args.set)
        return kube.list_sets()

    def view(data: Any) -> Any:
        if args.set:
            return out.set_detail(data)
        return out.set_table(data, kube.namespace)

    def finished(data: Any) -> bool:
        sets = [data] if args.set else data
        return bool(sets) and all(_phase(s) in FINAL_PHASES for s in sets)

    if not args.watch:
        out.show(view(fetch()))
        return 0
    until_done = args.until_done
    code = out.watch(
        fetch, view, lambda data: until_done and finished(data), args.interval, transient=(Transient,)
    )
    if code == 0 and until_done:  # a script waiting for the end learns whether it needs a person
        sets = [fetch()] if args.set else fetch()
        if any(_phase(s) == Phase.STALLED for s in sets):
            return 1
    return code


def cmd_pause(kube: Kube, args: argparse.Namespace, out: render.Output) -> int:
    name = f"{kube.namespace}/{args.set}"
    body = kube.get_set(args.set)
    if (body.get("spec") or {}).get("paused"):
        out.info(f"{KIND} {name} is already paused (spec.paused=true)")
        return 0
    body = kube.patch_set(args.set, {"spec": {"paused": True}})
    flying = (body.get("status") or {}).get("inFlight") or 0
    out.info(f"{KIND} {name} paused: no new reinstalls; {flying} in flight finish")
    return 0


def cmd_resume(kube: Kube, args: argparse.Namespace, out: render.Output) -> int:
    """spec.paused=false, and the failures so far acknowledged: the failure budget counts only later ones.

    The patch carries the resourceVersion read, so what is acknowledged is exactly the failedCount seen (a
    concurrent status write makes it 409: read again and retry)."""
    name = f"{kube.namespace}/{args.set}"
    for attempt in range(CONFLICT_RETRIES):
        body = kube.get_set(args.set)
        status = body.get("status") or {}
        failed = int(status.get("failedCount") or 0)
        round_ = int(status.get("round") or 0)
        before = acknowledged_for(
            (body["metadata"].get("annotations") or {}).get(ACKNOWLEDGED_ANNOTATION), round_
        )
        patch = {
            "metadata": {
                "resourceVersion": body["metadata"]["resourceVersion"],
                "annotations": {ACKNOWLEDGED_ANNOTATION: f"{round_}:{failed}"},
            },
            "spec": {"paused": False},
        }
        try:
            kube.patch_set(args.set, patch)
            break
        except Conflict:  # the set changed since it was read
            if attempt == CONFLICT_RETRIES - 1:
                raise PluginError(
                    f"{KIND} {name} kept changing while resuming ({CONFLICT_RETRIES} tries): try again"
                ) from None
            time.sleep(0.2 * (attempt + 1))
    if failed == 0:
        acknowledged = "no failures to acknowledge"
    elif failed == before:
        acknowledged = f"{failed} failures acknowledged (as before)"
    else:
        acknowledged = f"acknowledged {failed} failures (was {before})"
    out.info(
        f"{KIND} {name} resumed: {acknowledged}; the failure budget counts failures beyond {failed} "
        f"(annotation {ACKNOWLEDGED_ANNOTATION}={round_}:{failed}, for this round only)"
    )
    if (body.get("spec") or {}).get("abort"):
        out.info(
            f"note: {name} is aborted (spec.abort=true) and resume does not undo that: set spec.abort "
            "back to false (with a new spec.revision for a new round)"
        )
    return 0


def cmd_abort(kube: Kube, args: argparse.Namespace, out: render.Output) -> int:
    name = f"{kube.namespace}/{args.set}"
    body = kube.get_set(args.set)
    if (body.get("spec") or {}).get("abort"):
        out.info(f"{KIND} {name} is already aborted (spec.abort=true)")
        return 0
    status = body.get("status") or {}
    summary = (
        f"{status.get('done') or 0}/{status.get('total') or 0} done, {status.get('inFlight') or 0} in flight"
    )
    if not args.yes:
        if not sys.stdin.isatty():
            raise PluginError(
                f"refusing to abort {KIND} {name} ({summary}) without confirmation: pass --yes "
                "(no new reinstalls until spec.abort is set back to false)"
            )
        question = (
            f"Abort {KIND} {name} ({summary})? No new reinstalls, those in flight finish, "
            "until spec.abort is set back to false. [y/N] "
        )
        if input(question).strip().lower() not in ("y", "yes"):
            out.info("not aborted")
            return 1
    body = kube.patch_set(args.set, {"spec": {"abort": True}})
    flying = (body.get("status") or {}).get("inFlight") or 0
    out.info(f"{KIND} {name} aborted: no new reinstalls; {flying} in flight finish")
    return 0


def cmd_plan(kube: Kube, args: argparse.Namespace, out: render.Output) -> int:
    name = f"{kube.namespace}/{args.set}"
    body = kube.get_set(args.set)
    status = body.get("status") or {}
    plan = status.get("plan")
    if not plan:
        if (body.get("spec") or {}).get("dryRun"):
            raise PluginError(
                f"{KIND} {name} has no plan yet (phase {status.get('phase') or 'none'}): the operator is "
                "resolving it; try again shortly"
            )
        raise PluginError(
            f"{KIND} {name} has no plan: set spec.dryRun: true to get one (kubectl patch ecsrs {args.set} "
            f'-n {kube.namespace} --type merge -p \'{{"spec":{{"dryRun":true}}}}\'), then run this again'
        )
    out.show(out.plan(body))
    return 0


def _phase(body: Mapping) -> str:
    return str((body.get("status") or {}).get("phase") or "")


# --- command line -----------------------------------------------------------------------------------------------


def _connection_flags(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """--kubeconfig, --context, -n and --format, before or after the command (`kubectl ecsr -n x status`)."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--kubeconfig", default=default, help="kubeconfig file (default: $KUBECONFIG)")
    parser.add_argument("--context", default=default, help="kubeconfig context (default: the current one)")
    parser.add_argument(
        "-n", "--namespace", default=default, help="namespace (default: the context's namespace)"
    )
    parser.add_argument(
        "--format",
        choices=("auto", "rich", "plain"),
        default=default,
        help=f"rich (colors, bars) or plain lines; auto: rich on a terminal (also ${FORMAT_ENV})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl ecsr",
        description="Watch and steer EcsReinstallSet rollouts (ecs.reinstall.dev/v1alpha1).",
    )
    _connection_flags(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    status = commands.add_parser(
        "status",
        help="the namespace's sets, or one set's progress",
        description="Without SET: a table of the namespace's sets. With SET: its progress, counts, message "
        "and failed servers.",
    )
    status.add_argument("set", nargs="?", metavar="SET", help="the EcsReinstallSet (default: all)")
    status.add_argument(
        "-w",
        "--watch",
        action="store_true",
        help="refresh until Ctrl-C (plain output prints the view again only when it changed)",
    )
    status.add_argument(
        "--until-done",
        action="store_true",
        help="with --watch: stop once the set (or every set) is Completed, Aborted or Planned",
    )
    status.add_argument(
        "--interval", type=float, default=2.0, help="seconds between refreshes with --watch (default 2)"
    )
    status.set_defaults(handler=cmd_status)

    for command, handler, text in (
        ("pause", cmd_pause, "no new reinstalls (spec.paused=true); those in flight finish"),
        ("resume", cmd_resume, "go on (spec.paused=false) and acknowledge the failures so far"),
        ("abort", cmd_abort, "stop the round for good (spec.abort=true); needs --yes"),
        ("plan", cmd_plan, "the dry run's plan (status.plan, with spec.dryRun: true)"),
    ):
        sub = commands.add_parser(command, help=text, description=text)
        sub.add_argument("set", metavar="SET", help="the EcsReinstallSet")
        if command == "abort":
            sub.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
        sub.set_defaults(handler=handler)

    for sub in commands.choices.values():
        _connection_flags(sub, suppress=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if render is None:
        print(f"error: {MISSING_EXTRA}", file=sys.stderr)
        return 1
    args = build_parser().parse_args(argv)
    if args.command == "status" and args.until_done and not args.watch:
        args.watch = True
    if args.command == "status" and args.interval <= 0:
        print("error: --interval must be more than 0", file=sys.stderr)
        return 2
    out = render.Output.create(args.format or os.environ.get(FORMAT_ENV) or "auto")
    try:
        kube = Kube.connect(args.kubeconfig, args.context, args.namespace)
        return args.handler(kube, args, out)
    except PluginError as error:
        out.error(str(error))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `kubectl ecsr status | head`: the reader is gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
