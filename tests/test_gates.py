"""The pure model-quality gates (modeldeploy.gates): golden-set parsing, the contract diff, the
checks' math (accuracy, agreement, PSI with its binning, parity, p95) and the verdict table."""

from __future__ import annotations

import json
import math
from array import array
from typing import Any

import pytest
from pydantic import ValidationError

from modeldeploy.api.spec import GATES_EMPTY_MESSAGE, GATES_NEED_GOLDEN_MESSAGE, GOLDEN_SOURCE_MESSAGE, Gates
from modeldeploy.api.status import GateCheck, Verdict
from modeldeploy.gates import checks
from modeldeploy.gates import golden as golden_module
from modeldeploy.gates.contract import Change, Contract, ContractError, Tensor, diff, from_metadata
from modeldeploy.gates.golden import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_EXAMPLES,
    Example,
    GoldenSet,
    GoldenSetError,
    batches,
    flatten,
    nesting_problem,
    parse_golden_set,
)
from modeldeploy.gates.judge import (
    Answers,
    Thresholds,
    contract_check,
    explain,
    judge_run,
    overall,
    refused,
    thresholds_of,
    unreachable,
)

EPS = checks.PSI_EPSILON


def psi_terms(expected: list[float], actual: list[float]) -> float:
    """The PSI formula written out, for expected values in the tables."""
    e = [max(x, EPS) for x in expected]
    a = [max(x, EPS) for x in actual]
    return sum((ai - ei) * math.log(ai / ei) for ei, ai in zip(e, a, strict=True))


# ------------------------------------------------------------------------------------ golden set


def jsonl(*rows: Any) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows)


def test_golden_set_parses_inputs_labels_groups_and_shapes() -> None:
    text = jsonl(
        {"inputs": {"x": [1.0, 2.0], "mask": [[1, 0], [0, 1]]}, "label": 1, "group": "a"},
        "",
        {"inputs": {"x": [3.0, 4.0], "mask": [[0, 0], [1, 1]]}, "label": "cat", "group": 7},
    )
    golden = parse_golden_set(text)
    assert golden.shapes == {"x": (2,), "mask": (2, 2)}
    # Kept flat and compact: numbers in an array (int64 'q' when every value is an integer).
    assert golden.examples[0] == Example(
        inputs={"x": array("d", [1.0, 2.0]), "mask": array("q", [1, 0, 0, 1])}, label=1, group="a"
    )
    assert golden.examples[1].label == "cat"
    assert golden.examples[1].group == "7"
    assert golden.has_labels


def test_golden_set_without_labels() -> None:
    golden = parse_golden_set(jsonl({"inputs": {"x": 1.5}}))
    assert golden.shapes == {"x": ()}
    assert not golden.has_labels


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "golden set: no examples (every line is blank)", id="empty"),
        pytest.param(
            jsonl({"inputs": {"x": [1]}}, "{not json"),
            "golden set line 2: not JSON (Expecting property name enclosed in double quotes at column 2)",
            id="not-json",
        ),
        pytest.param(
            "[1, 2]", "golden set line 1: must be a JSON object with inputs, not list", id="not-object"
        ),
        pytest.param(
            jsonl({"inputs": {"x": [1]}, "lable": 1}),
            "golden set line 1: unknown field 'lable' (allowed: group, inputs, label)",
            id="unknown-field",
        ),
        pytest.param(
            jsonl({"label": 1}),
            "golden set line 1: inputs must be a non-empty object of tensor name -> values",
            id="no-inputs",
        ),
        pytest.param(
            jsonl({"inputs": {}}),
            "golden set line 1: inputs must be a non-empty object of tensor name -> values",
            id="empty-inputs",
        ),
        pytest.param(
            jsonl({"inputs": {"x": [[1, 2], [3]]}}),
            "golden set line 1: inputs.x: ragged nested lists (rows of different shapes)",
            id="ragged",
        ),
        pytest.param(
            jsonl({"inputs": {"x": []}}),
            "golden set line 1: inputs.x: an empty list has no shape",
            id="empty-list",
        ),
        pytest.param(
            jsonl({"inputs": {"x": [1, None]}}),
            "golden set line 1: inputs.x: NoneType is not a number, string, boolean or list",
            id="null-value",
        ),
        pytest.param(
            jsonl({"inputs": {"x": [1, 2]}}, {"inputs": {"x": [1, 2, 3]}}),
            "golden set line 2: inputs.x has shape [3], line 1's has [2]: "
            "every line must have the same shape",
            id="shape-differs",
        ),
        pytest.param(
            jsonl({"inputs": {"x": [1]}}, "  ", {"inputs": {"y": [1]}}),
            "golden set line 3: inputs ['y'] differ from line 1's ['x']",
            id="names-differ",
        ),
        pytest.param(
            jsonl({"inputs": {"x": [1]}, "label": [1, 0]}),
            "golden set line 1: label: must be a number, string or boolean, not list",
            id="label-list",
        ),
        pytest.param(
            jsonl({"inputs": {"x": [1]}, "group": {"g": 1}}),
            "golden set line 1: group: must be a number, string or boolean, not dict",
            id="group-object",
        ),
    ],
)
def test_golden_set_errors_name_the_line_and_field(text: str, message: str) -> None:
    with pytest.raises(GoldenSetError) as err:
        parse_golden_set(text)
    assert str(err.value) == message


def nested(depth: int) -> str:
    """A line whose deepest value is `depth` levels down: the line's object and `inputs` are two."""
    return '{"inputs": {"x": ' + "[" * (depth - 2) + "1" + "]" * (depth - 2) + "}}"


ONE = '{"inputs": {"x": [1, 2]}}\n'
TINY = '{"inputs":{"x":1}}\n'  # the shortest line: MAX_EXAMPLES of them fit in MAX_BYTES


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            nested(MAX_DEPTH + 1),
            f"golden set line 1: nested deeper than {MAX_DEPTH} levels",
            id="too-deep",
        ),
        pytest.param(
            # Deep enough to exhaust any recursion limit: refused before a parser recurses.
            ONE + nested(1_000_000),
            f"golden set line 2: nested deeper than {MAX_DEPTH} levels",
            id="too-deep-for-recursion",
        ),
        pytest.param(
            '{"inputs": {"x": ' + "[" * 500_000,
            "golden set line 1: not JSON (brackets do not balance)",
            id="unbalanced-open",
        ),
        pytest.param(
            '{"inputs": {"x": ' + "[{" * 20 + "1" + "}]" * 20 + "}}",
            f"golden set line 1: nested deeper than {MAX_DEPTH} levels",
            id="too-deep-mixed-brackets",
        ),
        pytest.param(
            TINY * MAX_EXAMPLES + TINY,
            f"golden set line {MAX_EXAMPLES + 1}: more than {MAX_EXAMPLES} examples",
            id="too-many-examples",
        ),
        pytest.param(
            ONE * (MAX_BYTES // len(ONE) + 1),
            f"golden set: {len(ONE) * (MAX_BYTES // len(ONE) + 1)} bytes, more than the "
            f"{MAX_BYTES // (1024 * 1024)} MiB allowed",
            id="too-many-bytes",
        ),
        pytest.param(
            # Counted as UTF-8, as it travels: 2 bytes a character here.
            '{"inputs": {"x": "' + "é" * (MAX_BYTES // 2) + '"}}',
            f"golden set: {MAX_BYTES + 21} bytes, more than the {MAX_BYTES // (1024 * 1024)} MiB allowed",
            id="too-many-bytes-utf8",
        ),
        pytest.param(
            ONE + '{"inputs": {"x": [1, 2}}',
            "golden set line 2: not JSON (Expecting ',' delimiter at column 23)",
            id="invalid-json",
        ),
        pytest.param(
            "inputs: {x: [1, 2]}\n",
            "golden set line 1: not JSON (Expecting value at column 1)",
            id="yaml-not-json",
        ),
        pytest.param(
            '{"inputs": {"x": [{}, {}]}}',
            "golden set line 1: inputs.x: dict is not a number, string, boolean or list",
            id="wrong-shape-objects",
        ),
        pytest.param(
            '"just a string"',
            "golden set line 1: must be a JSON object with inputs, not str",
            id="wrong-shape-top",
        ),
    ],
)
def test_golden_set_bounds_and_malformed_sets_are_one_error(text: str, message: str) -> None:
    with pytest.raises(GoldenSetError) as err:
        parse_golden_set(text)
    assert str(err.value) == message


def test_golden_set_at_the_bounds_parses() -> None:
    assert parse_golden_set(nested(MAX_DEPTH)).shapes == {"x": (1,) * (MAX_DEPTH - 2)}
    assert len(parse_golden_set(TINY * MAX_EXAMPLES).examples) == MAX_EXAMPLES
    # Brackets inside strings are not nesting, escaped quotes included.
    text = '{"inputs": {"x": ["a\\"' + "[" * 100 + '", "' + "{" * 100 + '"]}}'
    assert parse_golden_set(text).shapes == {"x": (2,)}


@pytest.mark.parametrize(
    "error", [pytest.param(RecursionError, id="recursion"), pytest.param(MemoryError, id="memory")]
)
def test_golden_set_parser_exhaustion_is_a_golden_set_error(
    error: type[BaseException], monkeypatch: pytest.MonkeyPatch
) -> None:
    def exhausted(_: str) -> Any:
        raise error()

    monkeypatch.setattr(golden_module.json, "loads", exhausted)
    with pytest.raises(GoldenSetError) as err:
        parse_golden_set(ONE)
    assert str(err.value) == f"golden set line 1: cannot be parsed ({error.__name__})"


@pytest.mark.parametrize(
    ("line", "limit", "expected"),
    [
        pytest.param("[[1]]", 2, None, id="at-limit"),
        pytest.param("[[[1]]]", 2, "nested deeper than 2 levels", id="one-over"),
        pytest.param("[[1],[2],[3],[4]]", 2, None, id="wide-not-deep"),
        pytest.param('["[[[[", "]]]]]"]', 2, None, id="brackets-in-strings"),
        pytest.param("[[[", 2, "not JSON (brackets do not balance)", id="unclosed"),
        pytest.param("]]][[[", 2, "not JSON (brackets do not balance)", id="closes-unmatched"),
    ],
)
def test_nesting_problem(line: str, limit: int, expected: str | None) -> None:
    assert nesting_problem(line, limit) == expected


def test_an_invalid_golden_set_fails_every_quality_check_naming_the_problem() -> None:
    thresholds = Thresholds(min_accuracy=0.9, max_psi=0.2)
    found = refused(thresholds, "golden set invalid: line 1: nested deeper than 32 levels")
    assert [(c.name, c.verdict) for c in found] == [("accuracy", Verdict.FAIL), ("psi", Verdict.FAIL)]
    assert overall(found) == Verdict.FAIL
    assert explain(found) == (
        "accuracy: golden set invalid: line 1: nested deeper than 32 levels; "
        "psi: golden set invalid: line 1: nested deeper than 32 levels"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(3, array("q", [3]), id="scalar"),
        pytest.param([[1, 2], [3, 4]], array("q", [1, 2, 3, 4]), id="ints-row-major"),
        pytest.param([1, 2.5], array("d", [1.0, 2.5]), id="ints-and-floats"),
        pytest.param([2**63, 1], array("d", [2.0**63, 1.0]), id="past-int64"),
        pytest.param([10**400], [10**400], id="past-a-double"),
        pytest.param([True, False], [True, False], id="booleans"),
        pytest.param([["a", 1]], ["a", 1], id="strings-and-numbers"),
    ],
)
def test_golden_set_tensors_are_kept_flat_and_compact(value: Any, expected: Any) -> None:
    found = flatten(value)
    assert type(found) is type(expected) and found == expected
    if isinstance(expected, array):
        assert isinstance(found, array) and found.typecode == expected.typecode


@pytest.mark.parametrize(
    ("n", "size", "expected"),
    [
        pytest.param(5, 2, [range(0, 2), range(2, 4), range(4, 5)], id="remainder"),
        pytest.param(4, 4, [range(0, 4)], id="exact"),
        pytest.param(3, 10, [range(0, 3)], id="larger-than-set"),
    ],
)
def test_batches(n: int, size: int, expected: list[range]) -> None:
    examples = [Example(inputs={"x": [i]}) for i in range(n)]
    assert batches(examples, size) == expected


# ------------------------------------------------------------------------------------ contract


def t(name: str, datatype: str = "FP32", *shape: int, optional: bool = False) -> Tensor:
    return Tensor(name=name, datatype=datatype, shape=shape, optional=optional)


BASE = Contract(inputs=(t("x", "FP32", -1, 4),), outputs=(t("y", "INT64", -1),), max_batch_size=8)


def with_(**kwargs: Any) -> Contract:
    fields = {"inputs": BASE.inputs, "outputs": BASE.outputs, "max_batch_size": BASE.max_batch_size} | kwargs
    return Contract(**fields)


@pytest.mark.parametrize(
    ("canary", "expected"),
    [
        pytest.param(BASE, [], id="same"),
        pytest.param(
            with_(inputs=(t("x", "FP64", -1, 4),)),
            [Change(True, "input x", "input x: datatype FP32 -> FP64")],
            id="input-datatype",
        ),
        pytest.param(
            with_(inputs=(t("x", "FP32", -1, 5),)),
            [Change(True, "input x", "input x: shape [-1, 4] -> [-1, 5] (dimension 1: 4 -> 5)")],
            id="input-dim-changed",
        ),
        pytest.param(
            with_(inputs=(t("x", "FP32", -1, -1),)),
            [Change(False, "input x", "input x: shape [-1, 4] -> [-1, -1] (compatible)")],
            id="input-dim-widened-compatible",
        ),
        pytest.param(
            with_(inputs=(t("x", "FP32", 16, 4),)),
            [Change(True, "input x", "input x: shape [-1, 4] -> [16, 4] (dimension 0 now fixed at 16)")],
            id="input-dim-narrowed",
        ),
        pytest.param(
            with_(inputs=(t("x", "FP32", -1, 2, 2),)),
            [Change(True, "input x", "input x: shape [-1, 4] -> [-1, 2, 2] (rank 2 -> 3)")],
            id="input-rank",
        ),
        pytest.param(
            with_(inputs=()),
            [Change(True, "input x", "input x removed: clients still send it")],
            id="input-removed",
        ),
        pytest.param(
            with_(inputs=(t("x", "FP32", -1, 4), t("z", "BYTES", -1))),
            [Change(True, "input z", "input z added (BYTES [-1]): clients do not send it")],
            id="input-added",
        ),
        pytest.param(
            with_(inputs=(t("x", "FP32", -1, 4), t("z", "BYTES", -1, optional=True))),
            [Change(False, "input z", "input z added, optional")],
            id="optional-input-added",
        ),
        pytest.param(
            with_(outputs=()),
            [Change(True, "output y", "output y removed: clients read it")],
            id="output-removed",
        ),
        pytest.param(
            with_(outputs=(t("y", "INT64", -1), t("proba", "FP32", -1, 3))),
            [Change(False, "output proba", "output proba added (FP32 [-1, 3])")],
            id="output-added",
        ),
        pytest.param(
            with_(outputs=(t("y", "INT32", -1),)),
            [Change(True, "output y", "output y: datatype INT64 -> INT32")],
            id="output-datatype",
        ),
        pytest.param(
            with_(outputs=(t("y", "INT64", 8),)),
            [Change(False, "output y", "output y: shape [-1] -> [8] (compatible)")],
            id="output-dim-narrowed-compatible",
        ),
        pytest.param(
            Contract(inputs=BASE.inputs, outputs=(t("y", "INT64", -1, -1),)),
            [Change(True, "output y", "output y: shape [-1] -> [-1, -1] (rank 1 -> 2)")],
            id="output-rank",
        ),
        pytest.param(
            with_(max_batch_size=4),
            [Change(True, "max_batch_size", "max_batch_size 8 -> 4: clients batch up to 8")],
            id="max-batch-smaller",
        ),
        pytest.param(
            with_(max_batch_size=0),
            [Change(True, "max_batch_size", "max_batch_size 8 -> 0: clients batch up to 8")],
            id="batching-off",
        ),
        pytest.param(
            with_(max_batch_size=32),
            [Change(False, "max_batch_size", "max_batch_size 8 -> 32 (compatible)")],
            id="max-batch-larger",
        ),
        pytest.param(with_(max_batch_size=None), [], id="max-batch-unknown-not-compared"),
    ],
)
def test_contract_diff(canary: Contract, expected: list[Change]) -> None:
    assert diff(BASE, canary) == expected


def test_output_fixed_dimension_made_variable_breaks() -> None:
    primary = with_(outputs=(t("y", "FP32", -1, 3),))
    canary = with_(outputs=(t("y", "FP32", -1, -1),))
    assert diff(primary, canary) == [
        Change(True, "output y", "output y: shape [-1, 3] -> [-1, -1] (dimension 1 now variable)")
    ]


def test_max_batch_size_from_zero_is_compatible() -> None:
    assert diff(with_(max_batch_size=0), with_(max_batch_size=8)) == [
        Change(False, "max_batch_size", "max_batch_size 0 -> 8 (compatible)")
    ]


def test_contract_from_v2_metadata_and_triton_config() -> None:
    metadata = {
        "name": "iris",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {"name": "x", "datatype": "fp32", "shape": [-1, 4]},
            {"name": "w", "datatype": "FP32", "shape": [-1]},
        ],
        "outputs": [{"name": "y", "datatype": "INT64", "shape": [-1]}],
    }
    config = {
        "max_batch_size": 8,
        "input": [{"name": "w", "data_type": "TYPE_FP32", "dims": [1], "optional": True}],
    }
    assert from_metadata(metadata, config) == Contract(
        inputs=(t("x", "FP32", -1, 4), t("w", "FP32", -1, optional=True)),
        outputs=(t("y", "INT64", -1),),
        max_batch_size=8,
    )
    assert from_metadata(metadata).max_batch_size is None


@pytest.mark.parametrize(
    ("metadata", "config", "message"),
    [
        pytest.param({"inputs": {}}, None, "model metadata: inputs must be a list", id="inputs-not-list"),
        pytest.param(
            {"inputs": [{"datatype": "FP32", "shape": []}]},
            None,
            "model metadata: inputs[0].name must be a non-empty string",
            id="no-name",
        ),
        pytest.param(
            {"outputs": [{"name": "y", "shape": [1]}]},
            None,
            "model metadata: outputs[0] (y).datatype must be a string",
            id="no-datatype",
        ),
        pytest.param(
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-2]}]},
            None,
            "model metadata: inputs[0] (x).shape must be a list of integers >= -1",
            id="bad-dim",
        ),
        pytest.param(
            {},
            {"max_batch_size": "8"},
            "model config: max_batch_size must be an integer >= 0",
            id="bad-max-batch",
        ),
    ],
)
def test_contract_from_bad_metadata(
    metadata: dict[str, Any], config: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(ContractError) as err:
        from_metadata(metadata, config)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("changes", "allow", "verdict", "value", "message"),
    [
        pytest.param([], False, Verdict.PASS, 0, "same contract as the primary", id="same"),
        pytest.param(
            [Change(False, "output p", "output p added (FP32 [-1, 3])")],
            False,
            Verdict.PASS,
            0,
            "no breaking change; compatible: output p added (FP32 [-1, 3])",
            id="compatible",
        ),
        pytest.param(
            [
                Change(True, "input x", "input x: datatype FP32 -> FP64"),
                Change(False, "output p", "output p added"),
            ],
            False,
            Verdict.FAIL,
            1,
            "breaking: input x: datatype FP32 -> FP64; compatible: output p added",
            id="breaking",
        ),
        pytest.param(
            [Change(True, "input x", "input x removed: clients still send it")],
            True,
            Verdict.PASS,
            1,
            "breaking changes accepted by allowContractChange: input x removed: clients still send it",
            id="breaking-allowed",
        ),
    ],
)
def test_contract_check(
    changes: list[Change], allow: bool, verdict: Verdict, value: float, message: str
) -> None:
    assert contract_check(changes, allow_breaking=allow) == GateCheck(
        name="contract", value=value, threshold=0, verdict=verdict, message=message
    )


# ------------------------------------------------------------------------------------ the math


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([2], 2, id="class-label"),
        pytest.param([2.0], 2, id="integral-float-is-the-class"),
        pytest.param([0.25], 0.25, id="score"),
        pytest.param([b"setosa"], "setosa", id="bytes-decoded"),
        pytest.param([True], 1, id="bool-is-int"),
        pytest.param([0.1, 0.7, 0.2], 1, id="argmax"),
        pytest.param([0.5, 0.5, 0.0], 0, id="argmax-first-on-tie"),
    ],
)
def test_top1(values: list[Any], expected: Any) -> None:
    assert checks.top1(values) == expected


@pytest.mark.parametrize(
    ("datatype", "per_example", "expected"),
    [
        pytest.param("FP32", 1, True, id="float-score"),
        pytest.param("fp64", 1, True, id="lowercase"),
        pytest.param("FP32", 3, False, id="probabilities-argmax-class"),
        pytest.param("INT64", 1, False, id="int-label"),
        pytest.param("BYTES", 1, False, id="string-label"),
    ],
)
def test_continuous(datatype: str, per_example: int, expected: bool) -> None:
    assert checks.continuous(datatype, per_example) is expected


@pytest.mark.parametrize(
    ("predictions", "labels", "expected"),
    [
        pytest.param([1, 2, 3, 4], [1, 2, 3, 4], 1.0, id="all-right"),
        pytest.param([1, 2, 3, 4], [1, 2, 0, 0], 0.5, id="half"),
        pytest.param([0, 0], [1, 1], 0.0, id="none"),
        pytest.param([1, 0], [1.0, False], 1.0, id="json-numbers-and-bools"),
        pytest.param(["cat", "dog"], ["cat", "cow"], 0.5, id="strings"),
        pytest.param([1], ["1"], 0.0, id="string-label-is-not-a-number"),
    ],
)
def test_accuracy(predictions: list[Any], labels: list[Any], expected: float) -> None:
    assert checks.accuracy(predictions, labels) == expected


def test_agreement_is_accuracy_against_the_primary() -> None:
    assert checks.agreement([0, 1, 2, 2], [0, 1, 2, 1]) == 0.75


REF_100 = [float(i) for i in range(100)]


@pytest.mark.parametrize(
    ("reference", "actual", "continuous", "expected"),
    [
        pytest.param([0, 1] * 50, [0, 1] * 50, False, 0.0, id="classes-same"),
        pytest.param(
            [0] * 50 + [1] * 50,
            [0] * 80 + [1] * 20,
            False,
            psi_terms([0.5, 0.5], [0.8, 0.2]),
            id="classes-shifted",
        ),
        pytest.param(
            [0] * 100,
            [0] * 50 + [1] * 50,
            False,
            psi_terms([1.0, 0.0], [0.5, 0.5]),
            id="class-new-empty-bin-epsilon",
        ),
        pytest.param(["a", "b"], ["a", "b"], False, 0.0, id="string-classes"),
        pytest.param(REF_100, REF_100, True, 0.0, id="deciles-same"),
        pytest.param(REF_100, list(reversed(REF_100)), True, 0.0, id="deciles-order-free"),
        pytest.param(
            REF_100,
            [v + 1000 for v in REF_100],
            True,
            psi_terms([0.1] * 10, [0.0] * 9 + [1.0]),
            id="deciles-all-above",
        ),
        pytest.param(
            REF_100,
            [v + 50 for v in REF_100],
            True,
            # 50..89 fill deciles 5..8 with 10 each; 90..149 all land in the top decile (> q9 = 89.1).
            psi_terms([0.1] * 10, [0.0] * 5 + [0.1] * 4 + [0.6]),
            id="deciles-shifted-half",
        ),
        pytest.param([0.5] * 20, [0.5] * 20, True, 0.0, id="tied-quantiles-merge-bins"),
        pytest.param(
            [0.5] * 20, [0.5] * 10 + [0.9] * 10, True, psi_terms([1.0, 0.0], [0.5, 0.5]), id="tied-then-above"
        ),
    ],
)
def test_psi(reference: list[Any], actual: list[Any], continuous: bool, expected: float) -> None:
    assert checks.psi(reference, actual, continuous_values=continuous) == pytest.approx(expected, abs=1e-12)


def test_decile_edges_are_the_inclusive_quantiles() -> None:
    assert checks.decile_edges(REF_100) == pytest.approx([9.9 * i for i in range(1, 10)])
    assert checks.decile_edges([1.0]) == []


@pytest.mark.parametrize(
    ("predictions", "groups", "positive", "rates", "parity"),
    [
        pytest.param(
            [1] * 4 + [0] * 6 + [1] * 5 + [0] * 5,
            ["a"] * 10 + ["b"] * 10,
            1,
            {"a": 0.4, "b": 0.5},
            0.8,
            id="ratio",
        ),
        pytest.param([1, 1, 1, 1], ["a", "a", "b", "b"], 1, {"a": 1.0, "b": 1.0}, 1.0, id="equal"),
        pytest.param(
            [0, 0, 0, 0], ["a", "a", "b", "b"], 1, {"a": 0.0, "b": 0.0}, 1.0, id="no-positives-is-parity"
        ),
        pytest.param([1, 0, 0, 0], ["a", "a", "b", "b"], 1, {"a": 0.5, "b": 0.0}, 0.0, id="one-group-never"),
        pytest.param(
            ["yes", "no", "yes", "yes"],
            ["x", "x", "y", "y"],
            "yes",
            {"x": 0.5, "y": 1.0},
            0.5,
            id="string-positive",
        ),
    ],
)
def test_demographic_parity(
    predictions: list[Any], groups: list[str], positive: Any, rates: dict[str, float], parity: float
) -> None:
    assert checks.positive_rates(predictions, groups, positive) == rates
    assert checks.demographic_parity(rates) == parity


@pytest.mark.parametrize(
    ("latencies", "expected"),
    [
        pytest.param([0.5], 0.5, id="one"),
        pytest.param([i / 1000 for i in range(20, 0, -1)], 0.019, id="twenty-nearest-rank"),
        pytest.param([float(i) for i in range(1, 101)], 95.0, id="hundred"),
        pytest.param([1.0, 9.0], 9.0, id="two-takes-the-top"),
    ],
)
def test_p95(latencies: list[float], expected: float) -> None:
    assert checks.p95(latencies) == expected


# ------------------------------------------------------------------------------------ verdicts


def golden(n: int = 40, *, labels: bool = True, groups: bool = True) -> GoldenSet:
    return GoldenSet(
        examples=tuple(
            Example(
                inputs={"x": [float(i)]},
                label=(i % 2) if labels else None,
                group=("a" if i < n // 2 else "b") if groups else None,
            )
            for i in range(n)
        ),
        shapes={"x": (1,)},
    )


def answers(preds: list[Any], latencies: tuple[float, ...] = (0.01,) * 5, **kw: Any) -> Answers:
    return Answers(predictions=tuple(preds), latencies=latencies, **kw)


PERFECT = [i % 2 for i in range(40)]
HALF_WRONG = [i % 2 if i < 20 else 1 - i % 2 for i in range(40)]
ALL_ONE = [1] * 40


def one(checks_: list[GateCheck]) -> tuple[str, str, float | None]:
    (only,) = checks_
    return str(only.verdict), only.message, only.value


@pytest.mark.parametrize(
    ("thresholds", "canary", "primary", "labels", "expected"),
    [
        pytest.param(
            Thresholds(min_accuracy=0.9),
            answers(PERFECT),
            None,
            True,
            ("Pass", "accuracy 1 >= min 0.9 (40 labelled)", 1.0),
            id="accuracy-pass",
        ),
        pytest.param(
            Thresholds(min_accuracy=0.92),
            answers(HALF_WRONG),
            None,
            True,
            ("Fail", "accuracy 0.5 < min 0.92 (40 labelled)", 0.5),
            id="accuracy-fail",
        ),
        pytest.param(
            Thresholds(min_accuracy=0.92),
            answers(PERFECT),
            None,
            False,
            ("Inconclusive", "only 0 answered examples have a label, need 20", None),
            id="accuracy-no-labels",
        ),
        pytest.param(
            Thresholds(min_accuracy=0.92),
            answers([0.5] * 40, continuous=True),
            None,
            True,
            ("Inconclusive", "accuracy needs class outputs; the prediction output is a float score", None),
            id="accuracy-on-scores",
        ),
        pytest.param(
            Thresholds(min_agreement=0.9),
            answers(PERFECT),
            answers(HALF_WRONG),
            True,
            ("Fail", "agreement 0.5 < min 0.9 (40 examples)", 0.5),
            id="agreement-fail",
        ),
        pytest.param(
            Thresholds(min_agreement=0.9),
            answers(PERFECT),
            answers(PERFECT),
            True,
            ("Pass", "agreement 1 >= min 0.9 (40 examples)", 1.0),
            id="agreement-pass",
        ),
        pytest.param(
            Thresholds(min_agreement=0.9),
            answers(PERFECT),
            None,
            True,
            ("Inconclusive", "no primary serving to compare with", None),
            id="agreement-no-primary",
        ),
        pytest.param(
            Thresholds(min_agreement=0.9),
            answers(PERFECT),
            answers([None] * 30 + [0] * 10, error="primary: connection refused"),
            True,
            (
                "Inconclusive",
                "only 10 examples answered by both canary and primary, need 20: primary: connection refused",
                None,
            ),
            id="agreement-primary-down",
        ),
        pytest.param(
            Thresholds(max_psi=0.25),
            answers(ALL_ONE),
            answers(PERFECT),
            True,
            (
                "Fail",
                f"PSI {psi_terms([0.5, 0.5], [0, 1]):.4g} vs the primary > max 0.25 "
                "(one bin per class, 40 examples)",
                pytest.approx(psi_terms([0.5, 0.5], [0, 1])),
            ),
            id="psi-fail-vs-primary",
        ),
        pytest.param(
            Thresholds(max_psi=0.25),
            answers(PERFECT),
            None,
            True,
            ("Pass", "PSI 0 vs the labels <= max 0.25 (one bin per class, 40 examples)", 0.0),
            id="psi-vs-labels",
        ),
        pytest.param(
            Thresholds(max_psi=0.25),
            answers(PERFECT),
            None,
            False,
            (
                "Inconclusive",
                "no reference distribution: no primary serving and no labels in the golden set",
                None,
            ),
            id="psi-no-reference",
        ),
        pytest.param(
            Thresholds(max_psi=0.25),
            answers([float(i) for i in range(40)], continuous=True),
            answers([float(i) for i in range(40)], continuous=True),
            True,
            ("Pass", "PSI 0 vs the primary <= max 0.25 (reference deciles, 40 examples)", 0.0),
            id="psi-scores-deciles",
        ),
        pytest.param(
            Thresholds(max_latency_p95=0.1),
            answers(PERFECT, latencies=(0.02, 0.03, 0.25)),
            None,
            True,
            ("Fail", "p95 latency 250ms > max 100ms (3 requests, client-side)", 0.25),
            id="latency-fail",
        ),
        pytest.param(
            Thresholds(max_latency_p95=0.1),
            answers(PERFECT, latencies=(0.02, 0.03)),
            None,
            True,
            ("Pass", "p95 latency 30ms <= max 100ms (2 requests, client-side)", 0.03),
            id="latency-pass",
        ),
        pytest.param(
            Thresholds(min_demographic_parity=0.9),
            answers(ALL_ONE),
            None,
            True,
            ("Pass", "demographic parity 1 >= min 0.9 (positive (1) rate 1 in every group)", 1.0),
            id="parity-pass",
        ),
        pytest.param(
            Thresholds(min_demographic_parity=0.9),
            answers([1] * 20 + [i % 2 for i in range(20)]),
            None,
            True,
            ("Fail", "demographic parity 0.5 < min 0.9 (positive (1) rate 0.5 in group b, 1 in a)", 0.5),
            id="parity-fail",
        ),
        pytest.param(
            Thresholds(min_demographic_parity=0.9, positive_value="yes"),
            answers(["yes"] * 40),
            None,
            False,
            ("Pass", "demographic parity 1 >= min 0.9 (positive (yes) rate 1 in every group)", 1.0),
            id="parity-string-positive",
        ),
        pytest.param(
            Thresholds(min_accuracy=0.9),
            answers([None] * 25 + [0] * 15, error="canary: HTTP 500"),
            None,
            True,
            (
                "Inconclusive",
                "only 15 of 40 examples answered by the canary, need 20: canary: HTTP 500",
                None,
            ),
            id="too-few-answered",
        ),
        pytest.param(
            Thresholds(min_accuracy=0.9, min_answered=10),
            answers([None] * 25 + [1, 0] * 7 + [1]),
            None,
            True,
            ("Pass", "accuracy 1 >= min 0.9 (15 labelled)", 1.0),
            id="min-answered-lowered",
        ),
    ],
)
def test_each_check(
    thresholds: Thresholds,
    canary: Answers,
    primary: Answers | None,
    labels: bool,
    expected: tuple[str, str, Any],
) -> None:
    assert one(judge_run(golden(labels=labels), thresholds, canary, primary)) == expected


def test_parity_needs_two_groups() -> None:
    result = judge_run(golden(groups=False), Thresholds(min_demographic_parity=0.9), answers(ALL_ONE), None)
    assert one(result) == (
        "Inconclusive",
        "demographic parity needs 2 or more groups in the answered examples, found 0",
        None,
    )


def test_every_configured_check_in_order_and_combined() -> None:
    thresholds = Thresholds(
        min_accuracy=0.9, min_agreement=0.9, max_psi=0.25, max_latency_p95=0.1, min_demographic_parity=0.5
    )
    results = judge_run(golden(), thresholds, answers(HALF_WRONG), answers(PERFECT))
    assert [(r.name, r.verdict, r.threshold) for r in results] == [
        ("accuracy", "Fail", 0.9),
        ("agreement", "Fail", 0.9),
        ("psi", "Pass", 0.25),
        ("latencyP95", "Pass", 0.1),
        ("demographicParity", "Pass", 0.5),
    ]
    assert overall(results) == Verdict.FAIL
    assert explain(results) == (
        "accuracy: accuracy 0.5 < min 0.9 (40 labelled); agreement: agreement 0.5 < min 0.9 (40 examples)"
    )


def test_unconfigured_checks_are_not_reported() -> None:
    assert judge_run(golden(), Thresholds(), answers(PERFECT), None) == []
    assert not Thresholds().any_quality_check()
    assert Thresholds(max_psi=0.1).any_quality_check()


def test_unreachable_makes_every_configured_check_inconclusive() -> None:
    results = unreachable(
        Thresholds(min_accuracy=0.9, max_psi=0.2), "canary unreachable: refused", contract=True
    )
    assert [(r.name, r.verdict, r.message) for r in results] == [
        ("contract", "Inconclusive", "canary unreachable: refused"),
        ("accuracy", "Inconclusive", "canary unreachable: refused"),
        ("psi", "Inconclusive", "canary unreachable: refused"),
    ]
    assert overall(results) == Verdict.INCONCLUSIVE
    assert explain(results).startswith("contract: canary unreachable: refused; accuracy:")


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        pytest.param([], Verdict.PASS, id="none-configured"),
        pytest.param([Verdict.PASS, Verdict.PASS], Verdict.PASS, id="all-pass"),
        pytest.param([Verdict.PASS, Verdict.INCONCLUSIVE], Verdict.INCONCLUSIVE, id="inconclusive-holds"),
        pytest.param([Verdict.INCONCLUSIVE, Verdict.FAIL], Verdict.FAIL, id="fail-wins"),
    ],
)
def test_overall(verdicts: list[Verdict], expected: Verdict) -> None:
    assert overall([GateCheck(name=f"c{i}", verdict=v) for i, v in enumerate(verdicts)]) == expected


def test_answers_must_cover_the_golden_set() -> None:
    with pytest.raises(ValueError, match="one canary prediction per golden-set example"):
        judge_run(golden(), Thresholds(min_accuracy=0.9), answers([1]), None)


def gates_spec(**fields: Any) -> Gates:
    return Gates.model_validate(fields)


def test_thresholds_of_the_spec() -> None:
    spec = gates_spec(
        goldenSet={"configMapKeyRef": {"name": "golden", "key": "iris.jsonl"}, "minAnswered": 30},
        minAccuracy=0.92,
        maxPSI=0.25,
        maxLatencyP95="150ms",
        minDemographicParity=0.9,
        positiveClass="yes",
    )
    assert thresholds_of(spec) == Thresholds(
        min_accuracy=0.92,
        max_psi=0.25,
        max_latency_p95=0.15,
        min_demographic_parity=0.9,
        positive_value="yes",
        min_answered=30,
    )
    assert thresholds_of(gates_spec()) == Thresholds()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"minAccuracy": 0.9}, GATES_NEED_GOLDEN_MESSAGE, id="threshold-without-golden-set"),
        pytest.param({"contract": {"enabled": False}}, GATES_EMPTY_MESSAGE, id="nothing-to-check"),
        pytest.param(
            {
                "contract": {"enabled": False},
                "goldenSet": {"storageUri": "https://models.example.com/golden.jsonl"},
            },
            GATES_EMPTY_MESSAGE,
            id="golden-set-without-threshold",
        ),
        pytest.param(
            {
                "goldenSet": {
                    "storageUri": "https://models.example.com/g.jsonl",
                    "configMapKeyRef": {"name": "g", "key": "k"},
                }
            },
            GOLDEN_SOURCE_MESSAGE,
            id="two-sources",
        ),
        pytest.param({"goldenSet": {}}, GOLDEN_SOURCE_MESSAGE, id="no-source"),
        pytest.param({"minAgreement": 1.5}, "less than or equal to 1", id="share-above-one"),
        pytest.param({"timeout": "0s"}, "must be between 1s and 1h", id="timeout-zero"),
        pytest.param({"maxLatencyP95": "2h"}, "must be between 1ms and 1h", id="latency-too-long"),
    ],
)
def test_gates_spec_rules(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        Gates.model_validate(fields)
    assert message in str(err.value)
