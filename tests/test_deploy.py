"""deploy/kubernetes: valid against Kubernetes' own schemas (kubernetes-validate, offline), and
consistent with what amebo-logship reads: the ConfigMap's file runs as it is, against files
laid out as a node lays them out."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import orjson
import pytest
import yaml

from .container_logs import CID, cri_lines, inner
from .shipper_proc import run_ship

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "kubernetes"


def manifests() -> dict[str, dict]:
    docs = {}
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def test_every_manifest_is_valid_against_the_kubernetes_schemas():
    docs = manifests()
    assert set(docs) == {"Namespace", "ServiceAccount", "ConfigMap", "DaemonSet"}
    for doc in docs.values():
        # strict: an unknown or misspelt field is an error, not silently dropped
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in DEPLOY.glob("*.yaml") if p.stem != "kustomization"
    )


def test_a_broken_manifest_is_caught():  # the validator is not a rubber stamp
    ds = manifests()["DaemonSet"]
    ds["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = {"no": "such"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, kubernetes_validate.latest_version(), strict=True)
    ds = manifests()["DaemonSet"]
    ds["spec"]["template"]["spec"]["containers"][0]["resourcez"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, kubernetes_validate.latest_version(), strict=True)


def _config() -> str:
    return manifests()["ConfigMap"]["data"]["amebo-logship.toml"]


def test_the_daemonset_gives_the_shipper_what_its_config_names():
    import tomllib

    docs = manifests()
    config = tomllib.loads(_config())
    pod = docs["DaemonSet"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    # the config file is the ConfigMap's key, where the args say
    config_arg = container["args"][container["args"].index("--config") + 1]
    assert Path(config_arg).name in docs["ConfigMap"]["data"]
    assert mounts[str(Path(config_arg).parent)]["name"] == "config"
    # the node's logs, read-only; the state on the node, writable
    for path in ("/var/log/containers", "/var/log/pods"):
        assert mounts[path]["readOnly"] is True
        assert volumes[mounts[path]["name"]]["hostPath"]["path"] == path
    state = config["ship"]["state-dir"]
    assert (
        not mounts[state].get("readOnly") and volumes[mounts[state]["name"]]["hostPath"]["type"] == "DirectoryOrCreate"
    )
    # credentials from a Secret, as files: never in argv or the manifest
    secret_dir = str(Path(config["api-key-file"]).parent)
    assert volumes[mounts[secret_dir]["name"]]["secret"]["secretName"] == "amebo-logship-es"
    assert str(Path(config["ca-certs"]).parent) == secret_dir
    text = "".join(p.read_text() for p in DEPLOY.glob("*.yaml"))
    assert "kind: Secret" not in text and not re.search(r"(?i)api[-_]?key\s*[:=]\s*['\"]?[A-Za-z0-9+/=]{20,}", text)
    # probes and Prometheus on the metrics port the config opens
    port = int(config["ship"]["metrics-addr"].rsplit(":", 1)[1])
    [metrics] = [p for p in container["ports"] if p["name"] == "metrics"]
    assert metrics["containerPort"] == port
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    annotations = docs["DaemonSet"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    # no API permissions: no token, no role
    assert (
        docs["ServiceAccount"]["automountServiceAccountToken"] is False and pod["automountServiceAccountToken"] is False
    )
    assert pod["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]
    assert container["resources"]["limits"]["memory"] and container["securityContext"]["readOnlyRootFilesystem"]
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    env = {e["name"]: e for e in container["env"]}
    assert env["AMEBO_LOGSHIP_HOST_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


@pytest.mark.slow
def test_the_configmap_file_ships_a_node_s_container_logs_as_it_is(tmp_path):
    """The ConfigMap's file, its paths moved under a temporary root (and the metrics address to
    127.0.0.1), run with --dry-run: CRI files named as kubelet names them, shipped with their
    pod's metadata; our own pod's logs excluded."""
    root = tmp_path / "node"
    text = _config()
    for path in ("/var/log/containers", "/var/lib/amebo-logship", "/run/secrets/amebo-logship"):
        text = text.replace(path, str(root) + path)
    text = text.replace("0.0.0.0:9464", "127.0.0.1:0")
    config = tmp_path / "amebo-logship.toml"
    config.write_text(text)
    logs = root / "var" / "log" / "containers"
    logs.mkdir(parents=True)
    secrets = root / "run" / "secrets" / "amebo-logship"
    secrets.mkdir(parents=True)
    (secrets / "api-key").write_text("a-key-id:a-key\n")
    (secrets / "ca.crt").write_text("")
    (logs / f"amebo-7d9f_shop_amebo-{CID}.log").write_bytes(
        b"".join(b"".join(cri_lines(inner(i, pad=i * 9000), n=i)) for i in range(5))
    )
    (logs / f"amebo-logship-x2b_logging_amebo-logship-{'b' * 64}.log").write_bytes(b"".join(cri_lines(inner(99))))
    code, out, err = run_ship(["ship", "--config", str(config), "--dry-run"], env={"AMEBO_LOGSHIP_HOST_NAME": "node-1"})
    assert code == 0, out + err
    docs = [orjson.loads(line) for line in out.splitlines()[1::2] if line.startswith("{")]
    assert sorted(d["seq"] for d in docs) == list(range(5))
    for d in docs:
        assert d["kubernetes.namespace"] == "shop" and d["kubernetes.pod.name"] == "amebo-7d9f"
        assert d["container.id"] == CID and d["host.name"] == "node-1" and d["stream"] == "stdout"
