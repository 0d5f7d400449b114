"""``segshield reproduce``: a protocol of :mod:`~segshield.evaluation.protocols` on real data.

Trains (or reuses, cached by its settings) the protocol's model on the training split,
its best epoch chosen on the validation split, with the encoder from ``--init`` or from
scratch; attacks the evaluation split (:func:`~segshield.evaluation.protocols.
evaluation_split`) with the protocol's ASMA towards other images' ground truth and
with the adaptive attack through each defence; rounds the adversarial images to 8 bits;
defends, scores and writes the report, whose first section states the protocol and
how the encoder was initialised (Liu et al., MICCAI 2020; docs/ALGORITHMS.md §4b).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from segshield.evaluation.config import EvalConfig
from segshield.evaluation.demo import DemoSettings, cached_model
from segshield.evaluation.executor import LocalExecutor
from segshield.evaluation.protocols import Protocol, evaluation_split, resolved_config
from segshield.evaluation.report import render_report
from segshield.evaluation.summary import summarize

__all__ = ["run_protocol", "protocol_html", "protocol_eval_config"]


def protocol_html(config: dict[str, Any]) -> str:
    """The report's section on the protocol: its settings and the encoder's origin.

    Example:
        >>> from segshield.evaluation.protocols import PROTOCOLS
        >>> "trained from scratch" in protocol_html(resolved_config(PROTOCOLS["quick"], "isic:x"))
        True
    """

    def e(value: Any) -> str:
        return html.escape(str(value))

    model = config["model"]
    return (
        f"<section><h2>Protocol {e(config['protocol'])}</h2>"
        f"<p>Model {e(model['name'])} (width {e(model['width'])}), encoder "
        f"<b>{e(model['encoder'])}</b>; {e(model['normalisation'])}; outputs: "
        f"{e(model['outputs'])}; {e(config['size'])}x{e(config['size'])} pixels. Targets: "
        f"{e(config['targets'])}; 8-bit PNG round trip: {e(config['png_roundtrip'])}; "
        f"splits: {e(json.dumps(config['splits']))}; evaluated: "
        f"{e(json.dumps(config['evaluated']))}.</p>"
        f"<pre>{e(json.dumps(config, indent=2))}</pre></section>"
    )


def run_protocol(
    protocol: Protocol,
    data_spec: str,
    out_dir: str | Path,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    executor: Any = None,
) -> tuple[list[dict[str, Any]], Path]:
    """Train (or reuse) the protocol's model, attack, defend, score and report.

    Args:
        protocol: the resolved protocol (:func:`~segshield.evaluation.protocols.resolve`).
        data_spec: ``KIND:PATH`` of a real data set (layouts of docs/ALGORITHMS.md §6).
        out_dir: folder for ``results/`` (resumable) and ``report.html``.
        cache_dir: model cache. Default ``segshield.evaluation.demo.default_cache_dir``.
        device: ``"cpu"`` or ``"cuda"``. Default ``"cpu"``.
        executor: where the evaluation's cells run
            (:func:`~segshield.evaluation.executor.get_executor`); ``None``: here.

    Returns:
        ``(summary rows, report path)``.

    Raises:
        FileNotFoundError, ValueError: from the loader, the trainer or ``--init``;
            ``ValueError`` too, after the report is written, when cells of a distributed
            run failed for good.

    Example:
        >>> from segshield.evaluation.protocols import resolve
        >>> run_protocol(resolve("fr-paper"), "isic:data/isic2017", "out")  # doctest: +SKIP
    """
    p = protocol
    sizes = DemoSettings(
        size=p.size, model=p.model, width=p.width, epochs=p.epochs, n_train=p.n_train, seed=p.seed
    )
    ckpt = cached_model(data_spec, sizes, cache_dir, device, init=p.init)
    cfg = protocol_eval_config(p, str(ckpt), data_spec, device)
    resolved = resolved_config(p, data_spec)
    out = Path(out_dir)
    outcome = (executor or LocalExecutor()).run(cfg, out / "results")
    store = outcome.store
    try:
        store.update_manifest(protocol=resolved)
        summary = summarize(store.rows())
        title = f"segshield reproduce: {p.name} on {data_spec}"
        report = render_report(
            store, out / "report.html", title=title, sections=[protocol_html(resolved)]
        )
    finally:
        store.close()
    outcome.raise_failed(report)
    return summary, report


def protocol_eval_config(p: Protocol, model: str, data_spec: str, device: str) -> EvalConfig:
    """The evaluation settings of a protocol for one model on one data set.

    Example:
        >>> from segshield.evaluation.protocols import resolve
        >>> protocol_eval_config(resolve("fr-paper"), "m", "isic:d", "cpu").attacks
        ['asma:steps=1001,tau=1e-07,beta=1e-06']
    """
    return EvalConfig(
        models=[model],
        datasets=[data_spec],
        attacks=[p.attack],
        adaptive=[p.adaptive],
        defenses=list(p.defenses),
        target=p.target,
        size=p.size,
        split=evaluation_split(data_spec),
        limit=p.limit,
        subset=p.subset,
        n=p.n_train,
        seed=p.seed,
        batch_size=p.batch_size,
        png_roundtrip=p.png_roundtrip,
        examples=1,
        device=device,
    )
