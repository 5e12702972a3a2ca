"""optax's own test suite, run against jaxopt_dl.

Each optax test file below runs in a fresh process with optax's names replaced by
jaxopt_dl's wherever jaxopt_dl exports the name (see ``tests/optax_suite.py``). Every
failure must be listed with its reason: in ``EXPECTED_FAILURES`` a deliberate
departure recorded in the changelog, in ``UPSTREAM_FAILURES`` a test that fails
against optax itself (checked by running the unpatched file); a listed test that
passes fails here too, so the lists stay exact. The two slowest files (about 12 and
2 minutes on two cores) are marked ``slow``: run them with ``pytest -m slow``.
"""

import collections
import types

import optax
import optax_suite
import pytest
from optax._src import alias, numerics

import jaxopt_dl as jdl

FAST = [
    "_src/transform_test.py",
    "_src/numerics_test.py",
    "_src/update_test.py",
    "_src/base_test.py",
    "transforms/_clipping_test.py",
    "transforms/_adding_test.py",
    "transforms/_combining_test.py",
    "transforms/_masking_test.py",
    "transforms/_conditionality_test.py",
    "schedules/_schedule_test.py",
    "schedules/_join_test.py",
    "schedules/_inject_test.py",
    "tree_utils/_state_utils_test.py",
]
SLOW = [
    "_src/alias_test.py",
    "transforms/_accumulation_test.py",
]

_SCHEDULE_RAISES = (
    "changelog: schedules raise ValueError for transition_steps <= 0, where optax logs "
    "and returns a constant schedule"
)
_DECAY_RATE_0 = (
    "changelog: exponential_decay(decay_rate=0) decays to 0 after transition_begin, as "
    "torch's ExponentialLR(gamma=0); optax returns a constant schedule"
)
_APPLY_UPDATES_CHECKS = (
    "changelog: apply_updates raises ValueError naming the first path where params and "
    "updates differ; optax's apply_updates(None, updates) returns None"
)

# optax test file -> {test id: reason}: departures of jaxopt_dl, each in the changelog.
EXPECTED_FAILURES = {
    "_src/update_test.py": {"UpdateTest::test_none_argument_apply_updates": _APPLY_UPDATES_CHECKS},
    "schedules/_schedule_test.py": {
        "PolynomialTest::test_zero_steps_schedule": _SCHEDULE_RAISES,
        "ExponentialTest::test_nonvalid_transition_steps0": _SCHEDULE_RAISES,
        "ExponentialTest::test_nonvalid_transition_steps1": _SCHEDULE_RAISES,
        "ExponentialTest::test_nonvalid_decay_rate0": _DECAY_RATE_0,
        "ExponentialTest::test_nonvalid_decay_rate1": _DECAY_RATE_0,
    },
}
# optax test file -> {test id: reason}: tests that fail against optax itself here, so
# they say nothing about jaxopt_dl; test_upstream_failures_fail_against_optax_itself
# checks that each still does.
UPSTREAM_FAILURES = {
    "transforms/_clipping_test.py": {
        "ClippingTest::test_clip_by_block_rms": (
            "optax's own clip_by_block_rms leaves a block rms of 0.9999999 (one float32 "
            "ulp below 1.0) where the test asks for 7 decimal places; jaxopt_dl's numbers "
            "are optax's for float32 leaves"
        ),
    },
}


def test_the_proxy_answers_with_jaxopt_dl_where_it_exports_the_name():
    proxy = optax_suite._Proxy(alias)
    assert proxy.adam is jdl.adam and proxy.sgd is jdl.sgd
    assert proxy.novograd is optax.novograd  # not exported by jaxopt_dl
    assert optax_suite._Proxy(numerics).safe_increment is jdl.safe_increment
    nested = optax_suite._Proxy(optax).schedules
    assert isinstance(nested, types.ModuleType)
    assert nested.cosine_decay_schedule is jdl.cosine_decay_schedule
    assert optax_suite._Proxy(optax).tree_utils.tree_get is optax.tree_utils.tree_get


def test_rewrite_patches_after_the_last_import_before_any_test_class():
    source = "import os\nfrom optax._src import alias\n\nclass T:\n    opt = alias.adam\n"
    namespace = {}
    exec(compile(optax_suite.rewrite(source), "<rewritten>", "exec"), namespace)  # noqa: S102
    assert namespace["T"].opt is jdl.adam


@pytest.mark.parametrize("path", FAST + [pytest.param(p, marks=pytest.mark.slow) for p in SLOW])
def test_optax_test_file_passes_against_jaxopt_dl(path, tmp_path):
    outcomes = optax_suite.run(path, tmp_path)
    counts = collections.Counter(outcomes.values())
    assert counts["passed"] > 0, f"{path} ran no test: {dict(counts)}"
    failed = {test for test, outcome in outcomes.items() if outcome == "failed"}
    expected = set(EXPECTED_FAILURES.get(path, {})) | set(UPSTREAM_FAILURES.get(path, {}))
    print(f"{path}: {dict(counts)}, {len(expected & failed)} expected failures")
    assert not failed - expected, f"unexpected failures in {path}: {sorted(failed - expected)}"
    assert not expected - failed, f"now passing, remove from the list: {sorted(expected - failed)}"


@pytest.mark.parametrize("path", sorted(UPSTREAM_FAILURES))
def test_upstream_failures_fail_against_optax_itself(path, tmp_path):
    outcomes = optax_suite.run(path, tmp_path, patched=False)
    assert outcomes, f"{path} ran no test"
    for test in UPSTREAM_FAILURES[path]:
        assert outcomes[test] == "failed", f"{test} passes against optax: list it elsewhere"
