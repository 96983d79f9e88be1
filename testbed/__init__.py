"""The test bed: local stand-ins for what the operator runs against, for the tests, the benchmark
and the demo. Not part of the installed package; nothing in `operator/modeldeploy` imports it.

- `controlplane`, `kubeapi`, `kubelet`, `operator_process`: the real control plane (etcd,
  kube-apiserver, kube-controller-manager from $KUBEBUILDER_ASSETS), the one test-side REST
  client, a kubelet stand-in, and `modeldeploy run` as a process.
- `prometheus`, `triton_exporter`: a real Prometheus and Triton-format metrics.
- `mlserver`: a real V2 inference server (MLServer, in its own venv) serving iris models trained
  here, for the model-quality gates.
- `demo`: `make demo` (`python -m testbed.demo`).
"""
