"""The benchmark's report: each measurement beside its target, from the medians measured."""

from __future__ import annotations

from typing import Any

from benchmarks.common import BINARY_SIZES, BOOT, CLIENT_SIZE, JSON_SIZES, ms


def print_table(medians: dict[tuple[str, int, int], float]) -> None:
    heads = ("(a) core", "(b) floor", "(c) /score", "(d) OIP", "(e) naive", "(f) typed", "(g) OIPj")
    print(f"\nmedian ms    {'size':>14}", *(f"{h:>10}" for h in heads))
    for n, c in BINARY_SIZES:
        row = [medians.get((k, n, c)) for k in "abcdefg"]
        cells = " ".join(f"{ms(v):>10}" if v is not None else f"{'-':>10}" for v in row)
        print(f"{'':12} {f'{n:,} x {c}':>14} {cells}")
    print()
    for (n, c), bar in zip(JSON_SIZES[1:], (0.8, 1.3), strict=True):
        b, cc, e, g = (medians[k, n, c] for k in "bceg")
        print(
            f"{n:,} x {c} JSON: (c)/(b) = {cc / b:.2f} (target <= {bar}), "
            f"(e)/(c) = {e / cc:.1f} (target >= 4), (g) OIP JSON/(c) = {g / cc:.2f} "
            "(target <= 1.2)"
        )
    d, a = medians["d", 100_000, 100], medians["a", 100_000, 100]
    print(f"100,000 x 100 binary: (d)/(a) = {d / a:.2f} (target <= 1.9)")
    for n, c in ((10_000, 100), (100_000, 100)):
        f, d = medians["f", n, c], medians["d", n, c]
        lists = medians.get(("c", n, c))
        versus = "" if lists is None else f", (f)/(c) JSON lists = {f / lists:.2f}"
        print(f"{n:,} x {c} typed /score: (f)/(d) binary OIP = {f / d:.2f} (goal <= 1.3){versus}")


def print_load(latency: dict[str, float] | None, load: dict[str, Any] | None) -> None:
    if latency is not None:
        score, health, naive, fixed = (
            latency[k] * 1e3 for k in ("score", "healthz", "naive", "fixed")
        )
        print(
            f"64 x 10 latency: /score {score:.2f} ms, /healthz {health:.2f} ms, naive app "
            f"{naive:.2f} ms; /score/naive = {score / naive:.2f} (target <= 1), "
            f"/score/healthz = {score / health:.2f} (no target: see the README); /score "
            f"answered without parsing or scoring {fixed:.2f} ms = {fixed / health:.2f}x /healthz"
        )
    if load is not None:
        ours, naive = load["score"], load["naive"]
        errors = ours["errors"] + naive["errors"]
        print(
            f"64 x 10, 8 connections ({ours['tool']}): /score {ours['rps']:.0f} requests/s "
            f"({ours['cpu'] * 1e3:.2f} server CPU ms each), naive app {naive['rps']:.0f} "
            f"requests/s ({naive['cpu'] * 1e3:.2f} CPU ms each); /score/naive = "
            f"{ours['rps'] / naive['rps']:.2f} (target >= 1.5)"
            + (f"; {errors} ERRORS" if errors else "")
        )


def print_client(found: dict[str, float]) -> None:
    n, c = CLIENT_SIZE
    client, here = found["client"], found["here"]
    print(
        f"{n:,} x {c} float32 through fairloss_client.Client ({found['chunks']:.0f} chunks): "
        f"{client:.2f} s, in-process score_batch {here:.2f} s; ratio {client / here:.2f} "
        "(target <= 1.5)"
    )


def print_bootstrap(boot: dict[str, float], added: dict[str, int | str]) -> None:
    n, c, replicates = BOOT
    extra = boot["bootstrap"] - boot["plain"]
    print(
        f"{n:,} x {c} /compare, 2 candidates: a {replicates:,}-replicate bootstrap adds "
        f"{extra * 1e3:.0f} ms ({boot['bootstrap'] * 1e3:.0f} against {boot['plain'] * 1e3:.0f}) "
        f"= {extra / boot['uniforms']:.2f}x numpy's 10^8 float32 uniforms "
        f"({boot['uniforms'] * 1e3:.0f} ms) (goal <= 5)"
    )
    said = {k: f"{v:,} bytes" if isinstance(v, int) else v for k, v in added.items()}
    print(
        f"replicate sums ({replicates:,} replicates, 2 candidates; independent of N) add to a "
        f"/compare answer: {said['json']} as JSON lists, {said['base64']} as base64"
    )
