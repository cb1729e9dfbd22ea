"""The sentences under the Theory page's figures, computed from the figures' own numbers.

Fixed captions once contradicted the plots above them: at depth 110 without batch norm the
residual net's gradients reach about 1e8 while the text said the identity kept them "within a
small factor" (issue 17). Each function here takes what a figure draws and returns what it
shows, as ``(message key, arguments)`` pairs the page translates; an argument whose name starts
with ``net`` holds "plain" or "residual", a name the page translates too. Which sentence is
chosen depends on the numbers: where a setting shows something the usual story omits (a residual
net without normalisation explodes at initialisation), that is what is said, and why.
"""

from __future__ import annotations

Finding = tuple[str, dict]
NETS = ("plain", "residual")
EXPLODES = 1e4  # a gradient norm, or an activations' growth from first block to last, beyond this
NOISE_R = 0.3  # neighbouring input gradients correlated below this look like white noise


def flow(f: dict, depth: int, batch_norm: bool) -> list[Finding]:
    """Gradient norms per layer (input first) and activation std per block, for both nets."""
    spread = {k: max(f[k]["grad_norm"]) / max(min(f[k]["grad_norm"]), 1e-30) for k in NETS}
    convs = len(f["plain"]["grad_norm"])  # the figure's x axis: convolutions, one fewer than the layers
    out: list[Finding] = [("theory.find.spread", {"n": convs, "plain": spread["plain"], "res": spread["residual"]})]
    exploding = [k for k in NETS if max(f[k]["grad_norm"]) > EXPLODES or _growth(f[k]) > EXPLODES]
    even, uneven = sorted(NETS, key=spread.get)
    if not exploding:  # "more even" says nothing good of a net whose gradients have exploded
        out.append(("theory.find.even", {"net": even, "net_other": uneven, "factor": spread[uneven] / spread[even]}))
    for net in NETS:
        grads = f[net]["grad_norm"]
        if net in exploding:
            why = "bn" if batch_norm else net  # the explanation differs: no normalisation, or despite it
            out.append((f"theory.find.explodes.{why}", {"net": net, "grad": max(grads), "growth": _growth(f[net])}))
            continue
        towards_input = grads[0] / max(grads[-1], 1e-30)
        key = "theory.find.larger_at_input" if towards_input >= 1 else "theory.find.smaller_at_input"
        out.append((key, {"net": net, "ratio": towards_input if towards_input >= 1 else 1 / towards_input}))
    return out


def _growth(net: dict) -> float:
    """How much the activations' std grows from the first block to the last."""
    return net["act_std"][-1] / max(net["act_std"][0], 1e-30)


def shattered(s: dict, deepest: bool = False, batch_norm: bool = True) -> list[Finding]:
    """Correlation r of the input gradients of neighbouring points, for both nets. "Try more
    layers" is advice only with batch norm below the page's largest depth (``deepest``): without
    it the plain net's r does not fall steadily with depth (0.96, 0.82, 0.88 at 20, 56, 110)."""
    rp, rr = s["plain"]["correlation"], s["residual"]["correlation"]
    out: list[Finding] = [("theory.find.r", {"rp": rp, "rr": rr})]
    if rp < NOISE_R:
        out.append(("theory.find.r_noise", {"net": "plain", "r": rp}))
    elif rp < rr:
        advice = batch_norm and not deepest
        out.append(("theory.find.r_lower" if advice else "theory.find.r_lower_deepest", {"rp": rp, "rr": rr}))
    else:
        out.append(("theory.find.r_not_here", {"rp": rp, "rr": rr}))
    if rr < NOISE_R:
        out.append(("theory.find.r_noise", {"net": "residual", "r": rr}))
    return out


def degradation(final: dict[str, dict]) -> list[Finding]:
    """``final``: model -> its last epoch's row (``epoch``, ``train_error``, ``test_error`` in %)."""
    t20, t56 = final["plain20"]["train_error"], final["plain56"]["train_error"]
    r20, r56 = final["resnet20"]["train_error"], final["resnet56"]["train_error"]
    epochs = int(max(row["epoch"] for row in final.values()))
    errors = {f"{k}_test": row["test_error"] for k, row in final.items()}
    out: list[Finding] = [("theory.find.errors", {"epochs": epochs, "t20": t20, "t56": t56, "r20": r20, "r56": r56})]
    out.append(("theory.find.test_errors", errors))
    out.append(("theory.find.degrades" if t56 > t20 else "theory.find.no_degradation", {"t20": t20, "t56": t56}))
    out.append(
        ("theory.find.res_deeper_better" if r56 <= r20 else "theory.find.res_deeper_worse", {"r20": r20, "r56": r56})
    )
    return out


def deletion(drops: dict[str, list[float]]) -> list[Finding]:
    """Accuracy lost (fraction) with each block deleted in turn, for "plain20" and "resnet20"."""
    mean = {k: 100 * sum(v) / len(v) for k, v in drops.items()}
    worst = {k: 100 * max(v) for k, v in drops.items()}
    args = {
        "plain": mean["plain20"],
        "res": mean["resnet20"],
        "plain_max": worst["plain20"],
        "res_max": worst["resnet20"],
    }
    key = "theory.find.paths" if mean["resnet20"] < mean["plain20"] else "theory.find.paths_not_here"
    return [("theory.find.deletion", args), (key, args)]
