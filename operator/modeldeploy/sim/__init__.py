"""Local stand-ins for what the operator runs against, for the test suite, the benchmark and the demo.

- `controlplane`, `kubeapi`, `kubelet`, `operator_process`: the real control plane (etcd,
  kube-apiserver, kube-controller-manager from $KUBEBUILDER_ASSETS), a small REST client, a
  kubelet stand-in, and `modeldeploy run` as a process.
- `prometheus`, `triton_exporter`: a real Prometheus and Triton-format metrics.
- `mlserver`: a real V2 inference server (MLServer, in its own venv) serving iris models trained
  here, for the model-quality gates.
- `emulator`, `serving` (and the modules they use): kmock's Kubernetes API emulator, the demo's
  fallback when the control plane's binaries are missing. kmock is a development dependency, so
  nothing here imports them eagerly.
"""
