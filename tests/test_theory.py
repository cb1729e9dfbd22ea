"""Block costs against hand-computed and published figures."""

import pytest

from resnet_core import theory


def test_one_by_one_reduction_is_the_classic_120m_against_12m():
    costs = theory.one_by_one_costs()
    assert costs["direct"]["macs"] == 28 * 28 * 32 * 192 * 25 == 120_422_400
    assert costs["reduced"]["macs"] == 28 * 28 * 16 * 192 + 28 * 28 * 32 * 16 * 25 == 12_443_648
    assert costs["direct"]["params"] == 192 * 32 * 25


def test_bottleneck_on_256_channels_costs_about_a_basic_block_on_64():
    costs = theory.block_costs()
    # He et al. 2016 Fig. 5: "similar time complexity"; conv weights 69,632 (bottleneck) vs 73,728 (basic).
    assert costs["basic"]["params"] == 2 * 64 * 64 * 9 + 4 * 64
    assert costs["bottleneck"]["params"] == 256 * 64 + 64 * 64 * 9 + 64 * 256 + 2 * 64 * 2 + 256 * 2
    assert 0.8 < costs["bottleneck"]["macs"] / costs["basic"]["macs"] < 1.2
    assert costs["basic_on_256"]["macs"] > 15 * costs["bottleneck"]["macs"]


def test_option_a_is_free_and_option_b_is_a_1x1_conv_with_batch_norm():
    costs = theory.shortcut_costs(16, 32)
    assert costs["A"] == {"params": 0, "macs": 0}
    assert costs["B"]["params"] == 16 * 32 + 2 * 32 and costs["B"]["macs"] == 16 * 16 * 32 * 16


def test_resnext_matches_resnet50_budget_as_torchvision_builds_them():
    costs = theory.cardinality_costs()
    assert costs["dense_3x3"]["params"] == 32 * costs["grouped_3x3"]["params"] == 128 * 128 * 9
    assert costs["resnet50"]["params"] == 25_557_032 and costs["resnext50_32x4d"]["params"] == 25_028_904
    # Published: 4.1 and 4.2 GMACs (torchvision's model cards: 4.09 and 4.23 GFLOPS as MACs).
    assert costs["resnet50"]["macs"] / 1e9 == pytest.approx(4.09, abs=0.02)
    assert costs["resnext50_32x4d"]["macs"] / 1e9 == pytest.approx(4.23, abs=0.02)


# Thresholds below were measured on this machine (2 CPU cores, seed 0, 64 real MNIST digits) and
# leave a wide margin; the measured value is in each comment.


def test_with_batch_norm_plain56_gradients_explode_toward_the_input_but_resnet56_stays_level(lab):
    flow = theory.gradient_flow(56, batch_norm=True)
    plain, res = flow["plain"]["grad_norm"], flow["residual"]["grad_norm"]
    assert len(plain) == len(res) == 1 + 2 * 27  # the first conv, then 2 per block
    assert plain[0] / plain[-1] > 100  # measured 2,990: first layer vs last (Yang et al. 2019)
    assert max(res) / min(res) < 30  # measured 10.3 across all 55 layers


def test_without_batch_norm_the_residual_forward_pass_explodes_and_the_plain_one_fades(lab):
    flow = theory.gradient_flow(56, batch_norm=False)
    res, plain = flow["residual"]["act_std"], flow["plain"]["act_std"]
    assert res[-1] / res[0] > 100  # measured 5,750: each block adds its variance to the identity
    assert plain[-1] < plain[0]  # measured 0.245 -> 0.041


def test_gradients_shatter_with_depth_in_plain_nets_not_in_resnets(lab):
    plain20 = theory.shattered_gradients(20, residual=False)["correlation"]
    plain56 = theory.shattered_gradients(56, residual=False)["correlation"]
    res56 = theory.shattered_gradients(56, residual=True)
    assert len(res56["trace"]) == 128
    res56 = res56["correlation"]
    assert abs(plain56) < 0.15  # measured -0.01: neighbouring gradients uncorrelated, white noise
    assert plain20 > plain56 + 0.2  # measured 0.46 at depth 20
    assert res56 > 0.6  # measured 0.82 (0.92 at depth 20, 0.63 at depth 110)


def test_the_shipped_degradation_csv_records_how_it_was_made():
    notes, rows = theory.read_degradation_csv(theory.shipped_twin("plain20").parent / "degradation.csv")
    assert any(n.startswith("command: python -m resnet_core.theory degradation") for n in notes)
    assert any(n.startswith("hardware:") for n in notes) and any(n.startswith("versions: torch") for n in notes)
    assert {r["model"] for r in rows} == set(theory.DEGRADATION_MODELS)
    final = {r["model"]: r for r in rows if r["epoch"] == max(x["epoch"] for x in rows)}
    # The paper's qualitative result, as measured here (see the CSV for the numbers).
    assert final["plain56"]["train_error"] > final["plain20"]["train_error"]  # deeper plain net trains worse
    assert final["resnet56"]["train_error"] < final["plain56"]["train_error"]  # the shortcut fixes it


def test_deleting_a_block_hurts_the_plain_net_far_more_than_the_resnet():
    shipped = theory.shipped("deletion")
    assert shipped["made"]["command"] == "python -m resnet_core.theory shipped"
    plain, res = shipped["plain20"], shipped["resnet20"]
    assert len(plain["drop"]) == len(res["drop"]) == 9
    mean = lambda r: sum(r["drop"]) / len(r["drop"])  # noqa: E731
    assert mean(plain) > 3 * mean(res), (mean(plain), mean(res))  # shipped: 79.6 vs 17.6 points (1,000 images)


def test_the_shipped_block_deletion_is_what_the_command_measures(lab):
    # The oracle: the measurement itself, on the shipped twin. Within two images in 1,000: the
    # shipped table was measured on one processor, and its thinnest top-two logit gap (3.4e-4, one
    # image with block 4 deleted) is within reach of another CPU's kernel rounding.
    live = theory.block_deletion(theory.shipped_twin("resnet20"), limit=1000)
    shipped = theory.shipped("deletion")["resnet20"]
    assert live["arch"] == shipped["arch"] and len(live["deleted"]) == len(shipped["deleted"])
    assert live["base"] == pytest.approx(shipped["base"], abs=0.002)
    assert live["deleted"] == pytest.approx(shipped["deleted"], abs=0.002)
    assert live["drop"] == pytest.approx(shipped["drop"], abs=0.004)


def test_the_shipped_cost_tables_are_what_the_modules_count():
    shipped = theory.shipped("costs")
    assert shipped.pop("made")["command"] == "python -m resnet_core.theory shipped"
    assert shipped == theory.costs()


def test_the_pages_numbers_come_from_the_shipped_tables():
    """Each net's last epoch of the shipped degradation runs, and the bottleneck's saving over a basic
    block on 256 channels: 2·9·256² against 256·64 + 9·64² + 64·256 multiply-adds per pixel, 16.9x."""
    _, rows = theory.read_degradation_csv(theory.DATA / "degradation.csv")
    final = theory.final_rows(rows)
    assert set(final) == {r["model"] for r in rows}
    assert all(final[m]["epoch"] == max(r["epoch"] for r in rows if r["model"] == m) for m in final)
    assert 15 < theory.bottleneck_saving(theory.shipped("costs")) < 19
