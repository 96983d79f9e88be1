#!/usr/bin/env python3
"""A tiny real ONNX model in three versions, laid out as a model store for the e2e suite.

    simple/v1/config.pbtxt  simple/v1/1/model.onnx   OUTPUT0 = 2 * INPUT0 + 1
    simple/v2/config.pbtxt  simple/v2/2/model.onnx   OUTPUT0 = 3 * INPUT0 - 1
    simple/v3/config.pbtxt  simple/v3/3/model.onnx   loads, then fails every inference

Each vN/ is one Triton model directory (storageUri pvc://model-store/simple/vN). The bad version
loads and turns ready, so it is the metric analysis that must catch it, not the readiness probe: it
reshapes its input to [-1, 1024], which no batch of fewer than 1024 values fits, and onnxruntime
returns an error for every request. Triton counts them in nv_inference_request_failure.

The store reaches the cluster as a PersistentVolumeClaim filled by a Job, from a ConfigMap that
carries the store as one .tar.gz (a few KiB); `--manifests` prints those objects.

    python e2e/make_model.py --out /tmp/store                  # write the store
    python e2e/make_model.py --check                           # run it with onnxruntime, if installed
    python e2e/make_model.py --manifests -n NS --image IMG     # YAML for kubectl apply -f -
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_NAME = "simple"
CLAIM = "model-store"
SEED_CONFIGMAP = "model-store-seed"
SEED_JOB = "model-store-seed"
# Old enough for every onnxruntime a current Triton ships, new enough for ReduceSum's axes input.
OPSET = 17
IR_VERSION = 8
BAD_RESHAPE = 1024


@dataclass(frozen=True)
class Version:
    number: int
    scale: float
    bias: float
    bad: bool = False

    def expected(self, values: list[float]) -> list[float]:
        if self.bad:
            raise ValueError(f"version {self.number} fails every inference")
        return [self.scale * v + self.bias for v in values]


VERSIONS = {
    "1": Version(1, scale=2.0, bias=1.0),
    "2": Version(2, scale=3.0, bias=-1.0),
    "3": Version(3, scale=1.0, bias=0.0, bad=True),
}

CONFIG = """name: "simple"
backend: "onnxruntime"
max_batch_size: 8
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 1 ] } ]
instance_group [ { kind: KIND_CPU, count: 1 } ]
"""


def build_onnx(version: Version) -> bytes:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", 1])
    y = helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", 1])
    inits = [
        helper.make_tensor("scale", TensorProto.FLOAT, [], [version.scale]),
        helper.make_tensor("bias", TensorProto.FLOAT, [], [version.bias]),
    ]
    source = "INPUT0"
    nodes = []
    if version.bad:
        # Shapes are symbolic, so this passes every load-time check and fails at run time only.
        inits += [
            helper.make_tensor("bad_shape", TensorProto.INT64, [2], [-1, BAD_RESHAPE]),
            helper.make_tensor("sum_axis", TensorProto.INT64, [1], [1]),
        ]
        nodes += [
            helper.make_node("Reshape", ["INPUT0", "bad_shape"], ["reshaped"]),
            helper.make_node("ReduceSum", ["reshaped", "sum_axis"], ["summed"], keepdims=1),
        ]
        source = "summed"
    nodes += [
        helper.make_node("Mul", [source, "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "bias"], ["OUTPUT0"]),
    ]
    graph = helper.make_graph(nodes, f"simple_v{version.number}", [x], [y], initializer=inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="modeldeploy-e2e",
    )
    onnx.checker.check_model(model, full_check=True)
    return bytes(model.SerializeToString())


def write_store(root: Path) -> Path:
    """root/simple/v{1,2,3}/ in Triton's layout; returns root."""
    for key, version in VERSIONS.items():
        model_dir = root / MODEL_NAME / f"v{key}"
        (model_dir / str(version.number)).mkdir(parents=True, exist_ok=True)
        (model_dir / "config.pbtxt").write_text(CONFIG)
        (model_dir / str(version.number) / "model.onnx").write_bytes(build_onnx(version))
    return root


def store_archive() -> bytes:
    """The whole store as a .tar.gz, members relative to the claim's root."""
    with tempfile.TemporaryDirectory() as tmp:
        root = write_store(Path(tmp))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(root / MODEL_NAME, arcname=MODEL_NAME)
        return buf.getvalue()


def seed_manifests(namespace: str, image: str, archive: bytes) -> list[dict[str, Any]]:
    """A ConfigMap with the archive, the claim, and a Job that unpacks one into the other.

    The Job runs the model-puller image (already loaded into the cluster) with its Python, so the
    e2e suite needs no other image."""
    labels = {"app.kubernetes.io/name": "modeldeploy-e2e", "app.kubernetes.io/component": "model-store"}
    unpack = (
        "import tarfile; "
        "tarfile.open('/seed/store.tar.gz').extractall('/store', filter='data'); "
        "print('model store ready')"
    )
    restricted = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": SEED_CONFIGMAP, "namespace": namespace, "labels": labels},
            "binaryData": {"store.tar.gz": base64.b64encode(archive).decode()},
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": CLAIM, "namespace": namespace, "labels": labels},
            # kind's default StorageClass (local-path) gives ReadWriteOnce volumes; every pod of the
            # single-node e2e cluster shares the node, so Triton pods can all mount it read-only.
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}},
        },
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": SEED_JOB, "namespace": namespace, "labels": labels},
            "spec": {
                "backoffLimit": 2,
                "ttlSecondsAfterFinished": 3600,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "Never",
                        # Triton's uid: the files it later reads are its own.
                        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
                        "containers": [
                            {
                                "name": "unpack",
                                "image": image,
                                "imagePullPolicy": "IfNotPresent",
                                "command": ["python", "-c", unpack],
                                "securityContext": restricted,
                                "volumeMounts": [
                                    {"name": "seed", "mountPath": "/seed", "readOnly": True},
                                    {"name": "store", "mountPath": "/store"},
                                ],
                            }
                        ],
                        "volumes": [
                            {"name": "seed", "configMap": {"name": SEED_CONFIGMAP}},
                            {"name": "store", "persistentVolumeClaim": {"claimName": CLAIM}},
                        ],
                    },
                },
            },
        },
    ]


def check_with_onnxruntime(root: Path) -> None:
    """Run every version with onnxruntime: the good ones compute, the bad one fails at run time."""
    import numpy as np
    import onnxruntime as ort

    x = np.array([[1.0], [2.0], [3.0]], dtype=np.float32)
    for key, version in VERSIONS.items():
        path = root / MODEL_NAME / f"v{key}" / str(version.number) / "model.onnx"
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # loads: good or bad
        if version.bad:
            try:
                session.run(None, {"INPUT0": x})
            except Exception as exc:  # onnxruntime raises its own error types
                print(f"v{key}: loads, fails at run time as intended: {str(exc).splitlines()[0][:100]}")
                continue
            raise SystemExit(f"v{key} was meant to fail at run time, and did not")
        (y,) = session.run(None, {"INPUT0": x})
        expected = version.expected([1.0, 2.0, 3.0])
        if [round(float(v), 5) for v in y.ravel()] != expected:
            raise SystemExit(f"v{key}: got {y.ravel().tolist()}, expected {expected}")
        print(f"v{key}: {x.ravel().tolist()} -> {y.ravel().tolist()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, help="write the store into this directory")
    parser.add_argument("--check", action="store_true", help="run each version with onnxruntime")
    parser.add_argument("--manifests", action="store_true", help="print the seed ConfigMap, PVC and Job")
    parser.add_argument("-n", "--namespace", default="modeldeploy-e2e")
    parser.add_argument("--image", default="ghcr.io/modeldeploy/model-puller:e2e", help="image for the Job")
    args = parser.parse_args(argv)
    if not (args.out or args.check or args.manifests):
        parser.error("nothing to do: give --out, --check or --manifests")
    if args.out:
        write_store(args.out)
        print(f"model store written to {args.out}", file=sys.stderr)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            check_with_onnxruntime(write_store(Path(tmp)))
    if args.manifests:
        import yaml

        docs = seed_manifests(args.namespace, args.image, store_archive())
        sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
