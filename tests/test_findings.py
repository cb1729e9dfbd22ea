"""Theory's sentences follow the numbers of their figures (issue 17): measured on the real twins
where the verdict is orders of magnitude clear, and on made-up figures for each branch."""

from __future__ import annotations

import pytest

from resnet_core import findings, theory
from ui.i18n import catalogue


def keys(found) -> list[str]:
    return [k for k, _ in found]


def test_a_deep_residual_net_without_batch_norm_is_said_to_explode_and_why():
    f = theory.gradient_flow(110, batch_norm=False)
    found = dict(findings.flow(f, 110, batch_norm=False))
    assert max(f["residual"]["grad_norm"]) > 1e6  # about 1e8 measured: far past any rounding
    assert "theory.find.explodes.residual" in found
    assert found["theory.find.explodes.residual"]["grad"] == max(f["residual"]["grad_norm"])


def test_with_batch_norm_the_residual_net_is_said_to_be_the_more_even():
    f = theory.gradient_flow(56, batch_norm=True)
    found = dict(findings.flow(f, 56, batch_norm=True))
    spread = {k: max(v["grad_norm"]) / min(v["grad_norm"]) for k, v in f.items()}
    assert spread["plain"] > 10 * spread["residual"]  # the figure's own numbers
    assert found["theory.find.even"]["net"] == "residual"
    assert not any(k.startswith("theory.find.explodes") for k in found)


def flow_of(plain_grads, res_grads, plain_std=(1, 1), res_std=(1, 1)) -> dict:
    return {
        "plain": {"grad_norm": list(plain_grads), "act_std": list(plain_std)},
        "residual": {"grad_norm": list(res_grads), "act_std": list(res_std)},
    }


def test_the_more_even_net_is_whichever_the_numbers_say():
    found = dict(findings.flow(flow_of([1, 2], [1, 100]), 20, True))
    assert found["theory.find.even"] == {"net": "plain", "net_other": "residual", "factor": 50}
    assert ("theory.find.smaller_at_input", {"net": "residual", "ratio": 100}) in findings.flow(
        flow_of([1, 2], [1, 100]), 20, True
    )


@pytest.mark.parametrize(
    ("rp", "rr", "said"),
    [
        (0.05, 0.9, ["theory.find.r", "theory.find.r_noise"]),
        (0.88, 0.95, ["theory.find.r", "theory.find.r_lower"]),  # the case the fixed text got wrong
        (0.9, 0.8, ["theory.find.r", "theory.find.r_not_here"]),
        (0.1, 0.1, ["theory.find.r", "theory.find.r_noise", "theory.find.r_noise"]),
    ],
)
def test_shattering_is_claimed_only_where_r_is_low(rp, rr, said):
    found = findings.shattered({"plain": {"correlation": rp}, "residual": {"correlation": rr}})
    assert keys(found) == said


def test_degradation_is_claimed_only_where_the_plain_net_fit_worse():
    def final(t20, t56, r20, r56):
        rows = {"plain20": t20, "plain56": t56, "resnet20": r20, "resnet56": r56}
        return {k: {"epoch": 6, "train_error": v, "test_error": v + 1} for k, v in rows.items()}

    assert "theory.find.degrades" in keys(findings.degradation(final(8, 16, 6, 5)))
    assert "theory.find.res_deeper_better" in keys(findings.degradation(final(8, 16, 6, 5)))
    said = keys(findings.degradation(final(9, 8, 6, 7)))
    assert "theory.find.no_degradation" in said and "theory.find.res_deeper_worse" in said


def test_the_shipped_deletion_figure_and_its_sentence_agree():
    d = theory.shipped("deletion")
    found = dict(findings.deletion({k: d[k]["drop"] for k in ("plain20", "resnet20")}))
    mean = {k: 100 * sum(d[k]["drop"]) / len(d[k]["drop"]) for k in ("plain20", "resnet20")}
    assert found["theory.find.deletion"]["res"] == pytest.approx(mean["resnet20"])
    assert ("theory.find.paths" in found) == (mean["resnet20"] < mean["plain20"])


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_finding_has_a_sentence_with_its_arguments(lang):
    text = catalogue(lang)
    found = findings.flow(flow_of([1, 1e9], [1, 2], (1, 1e6)), 110, False)
    found += findings.flow(flow_of([1, 1e9], [1, 2]), 110, True)
    found += findings.shattered({"plain": {"correlation": 0.1}, "residual": {"correlation": 0.5}})
    for key, args in found:
        text[key].format(**{k: text[f"theory.{v}"] if k.startswith("net") else v for k, v in args.items()})


def test_an_explosion_is_explained_by_the_setting_and_no_net_is_praised_for_evenness():
    exploded = flow_of([1, 1e9], [1, 2])
    assert "theory.find.explodes.bn" in keys(findings.flow(exploded, 110, batch_norm=True))
    assert "theory.find.explodes.plain" in keys(findings.flow(exploded, 110, batch_norm=False))
    assert "theory.find.even" not in keys(findings.flow(exploded, 110, batch_norm=False))


def test_no_advice_to_try_more_layers_at_the_deepest_setting():
    s = {"plain": {"correlation": 0.88}, "residual": {"correlation": 0.95}}
    assert keys(findings.shattered(s, deepest=True))[-1] == "theory.find.r_lower_deepest"
    assert keys(findings.shattered(s, batch_norm=False))[-1] == "theory.find.r_lower_deepest"  # no advice
    assert keys(findings.shattered(s))[-1] == "theory.find.r_lower"


def test_how_a_shipped_result_was_made_is_parsed_for_any_language():
    made = theory.csv_made(theory.read_degradation_csv(theory.DATA / "degradation.csv")[0])
    parts = theory.hardware_parts(made["hardware"])
    assert parts["arch"] and parts["cores"].isdigit() and made["seconds"] > 0
    assert theory.hardware_parts("x86_64, 8 CPU cores, NVIDIA H200")["gpu"] == "NVIDIA H200"
    assert theory.hardware_parts("x86_64, 2 CPU cores, no GPU")["gpu"] is None


def test_a_rerun_sits_beside_the_shipped_runs_last_epoch(lab):
    from resnet_core import runs

    for config in theory.degradation_configs(epochs=1):
        runs.create(config, owner="me")
    _, shipped = theory.read_degradation_csv(theory.DATA / "degradation.csv")
    rows = theory.latest_rerun("me")
    assert sorted(r["model"] for r in rows) == sorted(theory.DEGRADATION_MODELS) and theory.latest_rerun("you") == []
    plain20 = next(r for r in rows if r["model"] == "plain20")
    final = [r for r in shipped if r["model"] == "plain20"][-1]
    assert (plain20["shipped_test_error"], plain20["shipped_epochs"]) == (final["test_error"], final["epoch"])
