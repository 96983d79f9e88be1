"""tritonserver's command-line flags, and the rule that keeps `spec.runtime.args` off the ones we own.

tritonserver parses its flags with glibc's `getopt_long`, which accepts, besides the exact name:
- any abbreviation that is unambiguous among all of its long options (`--model-rep=/x` is
  `--model-repository=/x`), where candidates that share the same option id do not count as
  ambiguous (`--model-store` and `--model-repository` are one option);
- the value in the next argument (`--model-control-mode explicit`).

So a reserved flag is refused as any prefix of its name, with or without `=value`: the next-argument
form then has its flag refused too. Refusing every prefix, rather than only those unambiguous today,
turns away no working flag: a prefix of a reserved name that is not itself another option's full
name (none is) either selects the reserved option or is ambiguous, and tritonserver exits on an
ambiguous flag. It also holds for builds that compile fewer options (shorter abbreviations become
unambiguous there) and for options added later. tests/test_api.py checks it against a model of
getopt_long over every prefix of every option below.
"""

from __future__ import annotations

# Every long option of tritonserver 2.62.0 (NGC 25.10, the default image), as (name, option id,
# takes a value), in the order src/command_line_parser.cc (triton-inference-server/server, tag
# v2.62.0, TritonParser::SetupOptions) registers them. An option takes a value unless its argument
# description is Option::ArgNone; options that share an id (model-store, model-repository) are one
# option to getopt_long.
TRITON_LONG_OPTIONS: tuple[tuple[str, str, bool], ...] = (
    ("help", "HELP", False),
    ("id", "ID", True),
    ("exit-timeout-secs", "EXIT_TIMEOUT_SECS", True),
    ("model-store", "MODEL_REPOSITORY", True),
    ("model-repository", "MODEL_REPOSITORY", True),
    ("exit-on-error", "EXIT_ON_ERROR", True),
    ("disable-auto-complete-config", "DISABLE_AUTO_COMPLETE_CONFIG", False),
    ("strict-readiness", "STRICT_READINESS", True),
    ("model-control-mode", "MODEL_CONTROL_MODE", True),
    ("repository-poll-secs", "POLL_REPO_SECS", True),
    ("load-model", "STARTUP_MODEL", True),
    ("model-config-name", "CUSTOM_MODEL_CONFIG_NAME", True),
    ("model-load-thread-count", "MODEL_LOAD_THREAD_COUNT", True),
    ("model-load-retry-count", "MODEL_LOAD_RETRY_COUNT", True),
    ("model-namespacing", "MODEL_NAMESPACING", True),
    ("enable-peer-access", "ENABLE_PEER_ACCESS", True),
    ("allow-http", "ALLOW_HTTP", True),
    ("http-address", "HTTP_ADDRESS", True),
    ("http-port", "HTTP_PORT", True),
    ("reuse-http-port", "REUSE_HTTP_PORT", True),
    ("http-header-forward-pattern", "HTTP_HEADER_FORWARD_PATTERN", True),
    ("http-thread-count", "HTTP_THREAD_COUNT", True),
    ("http-max-input-size", "HTTP_MAX_INPUT_SIZE", True),
    ("http-restricted-api", "HTTP_RESTRICTED_API", True),
    ("allow-grpc", "ALLOW_GRPC", True),
    ("grpc-address", "GRPC_ADDRESS", True),
    ("grpc-port", "GRPC_PORT", True),
    ("reuse-grpc-port", "REUSE_GRPC_PORT", True),
    ("grpc-header-forward-pattern", "GRPC_HEADER_FORWARD_PATTERN", True),
    ("grpc-infer-thread-count", "GRPC_INFER_THREAD_COUNT", True),
    ("grpc-infer-allocation-pool-size", "GRPC_INFER_ALLOCATION_POOL_SIZE", True),
    ("grpc-max-response-pool-size", "GRPC_MAX_RESPONSE_POOL_SIZE", True),
    ("grpc-use-ssl", "GRPC_USE_SSL", True),
    ("grpc-use-ssl-mutual", "GRPC_USE_SSL_MUTUAL", True),
    ("grpc-server-cert", "GRPC_SERVER_CERT", True),
    ("grpc-server-key", "GRPC_SERVER_KEY", True),
    ("grpc-root-cert", "GRPC_ROOT_CERT", True),
    ("grpc-infer-response-compression-level", "GRPC_RESPONSE_COMPRESSION_LEVEL", True),
    ("grpc-keepalive-time", "GRPC_ARG_KEEPALIVE_TIME_MS", True),
    ("grpc-keepalive-timeout", "GRPC_ARG_KEEPALIVE_TIMEOUT_MS", True),
    ("grpc-keepalive-permit-without-calls", "GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS", True),
    ("grpc-http2-max-pings-without-data", "GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA", True),
    (
        "grpc-http2-min-recv-ping-interval-without-data",
        "GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS",
        True,
    ),
    ("grpc-http2-max-ping-strikes", "GRPC_ARG_HTTP2_MAX_PING_STRIKES", True),
    ("grpc-max-connection-age", "GRPC_ARG_MAX_CONNECTION_AGE_MS", True),
    ("grpc-max-connection-age-grace", "GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS", True),
    ("grpc-restricted-protocol", "GRPC_RESTRICTED_PROTOCOL", True),
    ("log-verbose", "LOG_VERBOSE", True),
    ("log-info", "LOG_INFO", True),
    ("log-warning", "LOG_WARNING", True),
    ("log-error", "LOG_ERROR", True),
    ("log-format", "LOG_FORMAT", True),
    ("log-file", "LOG_FILE", True),
    ("allow-sagemaker", "ALLOW_SAGEMAKER", True),
    ("sagemaker-port", "SAGEMAKER_PORT", True),
    ("sagemaker-safe-port-range", "SAGEMAKER_SAFE_PORT_RANGE", True),
    ("sagemaker-thread-count", "SAGEMAKER_THREAD_COUNT", True),
    ("allow-vertex-ai", "ALLOW_VERTEX_AI", True),
    ("vertex-ai-port", "VERTEX_AI_PORT", True),
    ("vertex-ai-thread-count", "VERTEX_AI_THREAD_COUNT", True),
    ("vertex-ai-default-model", "VERTEX_AI_DEFAULT_MODEL", True),
    ("allow-metrics", "ALLOW_METRICS", True),
    ("allow-gpu-metrics", "ALLOW_GPU_METRICS", True),
    ("allow-cpu-metrics", "ALLOW_CPU_METRICS", True),
    ("metrics-address", "METRICS_ADDRESS", True),
    ("metrics-port", "METRICS_PORT", True),
    ("metrics-interval-ms", "METRICS_INTERVAL_MS", True),
    ("metrics-config", "METRICS_CONFIG", True),
    ("trace-config", "TRACE_CONFIG", True),
    ("cache-config", "CACHE_CONFIG", True),
    ("cache-directory", "CACHE_DIR", True),
    ("rate-limit", "RATE_LIMIT", True),
    ("rate-limit-resource", "RATE_LIMIT_RESOURCE", True),
    ("pinned-memory-pool-byte-size", "PINNED_MEMORY_POOL_BYTE_SIZE", True),
    ("cuda-memory-pool-byte-size", "CUDA_MEMORY_POOL_BYTE_SIZE", True),
    ("cuda-virtual-address-size", "CUDA_VIRTUAL_ADDRESS_SIZE", True),
    ("min-supported-compute-capability", "MIN_SUPPORTED_COMPUTE_CAPABILITY", True),
    ("buffer-manager-thread-count", "BUFFER_MANAGER_THREAD_COUNT", True),
    ("host-policy", "HOST_POLICY", True),
    ("model-load-gpu-limit", "MODEL_LOAD_GPU_LIMIT", True),
    ("backend-directory", "BACKEND_DIR", True),
    ("backend-config", "BACKEND_CONFIG", True),
    ("repoagent-directory", "REPOAGENT_DIR", True),
    ("strict-model-config", "STRICT_MODEL_CONFIG", True),
    ("response-cache-byte-size", "RESPONSE_CACHE_BYTE_SIZE", True),
    ("trace-file", "TRACE_FILEPATH", True),
    ("trace-level", "TRACE_LEVEL", True),
    ("trace-rate", "TRACE_RATE", True),
    ("trace-count", "TRACE_COUNT", True),
    ("trace-log-frequency", "TRACE_LOG_FREQUENCY", True),
)

# The flags the operator sets and a ModelDeployment may not override (tritonserver takes the last
# occurrence, so a user flag would win): the model repository and control mode the puller and the
# probes rely on, the readiness and exit semantics rollouts rely on, the ports the Services, routes
# and NetworkPolicy expose, and the management-API restrictions (docs/security.md).
RESERVED_TRITON_FLAGS: tuple[str, ...] = (
    "model-repository",
    "model-store",
    "model-control-mode",
    "load-model",
    "strict-readiness",
    "exit-on-error",
    "http-port",
    "grpc-port",
    "metrics-port",
    "http-address",
    "grpc-address",
    "metrics-address",
    "http-restricted-api",
    "grpc-restricted-protocol",
)
# Every --allow-* (endpoints on or off), including ones a later tritonserver adds.
RESERVED_FLAG_FAMILY = "allow-"

RESERVED_FLAG_MESSAGE = (
    "may not set a flag the operator owns, nor abbreviate one (tritonserver reads --model-rep as "
    "--model-repository): --model-repository, --model-store, --model-control-mode, --load-model, "
    "--strict-readiness, --exit-on-error, ports and addresses, --http-restricted-api, "
    "--grpc-restricted-protocol, --allow-*; see docs/security.md"
)


# A prefix of any of these is refused: "--allow" alone selects allow-http in a build without the
# other endpoints.
_PREFIXED = (*RESERVED_TRITON_FLAGS, RESERVED_FLAG_FAMILY)


def _flag_name(arg: str) -> str:
    """The option name an argument spells: no leading dashes, nothing from the first '=' on."""
    body = arg[2:] if arg.startswith("--") else arg[1:]
    return body.partition("=")[0]


def is_reserved_flag(arg: str) -> bool:
    """Whether tritonserver could read `arg` as a flag the operator owns.

    One dash counts as two: tritonserver has no short options, so `-model-repository` only makes it
    exit, and refusing it keeps the rule the same as before abbreviations were handled."""
    if not arg.startswith("-"):
        return False
    name = _flag_name(arg)
    return name != "" and (
        name.startswith(RESERVED_FLAG_FAMILY) or any(flag.startswith(name) for flag in _PREFIXED)
    )


def _cel_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# The same rule in CEL, on one item of spec.runtime.args (`self` is the string). The one-element
# lists bind a name (CEL has no let that every supported API server knows).
RESERVED_FLAG_CEL = (
    "!self.startsWith('-') || "
    "[self.substring(self.startsWith('--') ? 2 : 1)].all(s, "
    "[s.indexOf('=') < 0 ? s : s.substring(0, s.indexOf('='))].all(n, "
    f"n == '' || !(n.startsWith({_cel_string(RESERVED_FLAG_FAMILY)}) || "
    f"[{', '.join(_cel_string(flag) for flag in _PREFIXED)}].exists(r, r.startsWith(n)))))"
)
