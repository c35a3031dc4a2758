"""Helm for the tests, through the helm-python-sdk package (Helm's Go SDK as a library, from
PyPI; no helm binary). .ci/run installs it into a venv and sets RUNWARDEN_HELM_PYTHON.

    python helm_sdk.py render CHART NAME NAMESPACE VALUES_JSON   -> manifests on stdout
    python helm_sdk.py lint CHART                                -> findings; exit 1 on errors
    python helm_sdk.py validate CHART VALUES_JSON                -> exit 1 when the schema refuses
    python helm_sdk.py install|upgrade KUBECONFIG CHART NAME NAMESPACE VALUES_JSON
    python helm_sdk.py uninstall KUBECONFIG NAME NAMESPACE

Exit code 3: helm-python-sdk is not installed in this Python.
"""

import json
import sys

try:
    import helm_python as helm
except ImportError:
    sys.exit(3)


def main(argv):
    op = argv[0]
    if op == "render":
        chart, name, namespace, values = argv[1:5]
        with helm.Chart.load(chart) as c:
            out = c.render(json.loads(values), name=name, namespace=namespace, is_install=True)
        for path in sorted(out):
            if out[path].strip() and not path.endswith(".txt"):
                print("---\n# Source: " + path + "\n" + out[path].strip())
    elif op == "lint":
        report = helm.lint(argv[1], strict=True)
        print(json.dumps(report))
        failed = report.get("errors") or [m for m in report["messages"] if m["severity"] >= 2]
        return 1 if failed else 0
    elif op == "validate":
        with helm.Chart.load(argv[1]) as c:
            try:
                c.validate_schema(json.loads(argv[2]))
            except helm.HelmError as e:
                print(e)
                return 1
    elif op in ("install", "upgrade"):
        kubeconfig, chart, name, namespace, values = argv[1:6]
        with helm.Config(kubeconfig_path=kubeconfig, namespace=namespace) as cfg:
            action = cfg.install if op == "install" else cfg.upgrade
            release = action(chart, name, json.loads(values), namespace=namespace, timeout=120)
        print(json.dumps({k: release.get(k) for k in ("name", "revision", "status")}))
    elif op == "uninstall":
        kubeconfig, name, namespace = argv[1:4]
        with helm.Config(kubeconfig_path=kubeconfig, namespace=namespace) as cfg:
            cfg.uninstall(name)
    else:
        print("unknown operation " + op, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except helm.HelmError as e:
        print(f"helm: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
