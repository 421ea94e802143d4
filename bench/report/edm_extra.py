"""The summary's CCM and S-map section (edm.json `ccm`, `smap_nonlinearity`): no paper figure, so shown,
never counted as meeting one."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from bench.report.inputs import label, weight_order
from bench.report.rows import fmt


def _null(entry: Mapping, method: str) -> str:
    n = (entry.get("null") or {}).get(method)
    if not isinstance(n, Mapping):
        return "-"
    return f"{fmt(n.get('mean'))} (p {fmt(n.get('p_value'), '.3f')})"


def edm_extra_section(edm: Any, md_table: Callable) -> list[str]:
    """Markdown lines; [] when edm.json has neither part."""
    if not isinstance(edm, Mapping) or not (isinstance(edm.get("ccm"), Mapping)
                                            or isinstance(edm.get("smap_nonlinearity"), Mapping)):
        return []
    data = label(edm.get("data"))
    settings = (edm.get("settings") or {}).get("ccm") or {}
    methods = list(settings.get("surrogates") or [])
    lines = ["## Cross mapping and nonlinearity (no paper figure)", "",
             f"*data*: {data}. CCM (`edm.ccm`, pyEDM 2.5.7 semantics) over the reach epochs: x = every joint angle "
             f"(E {settings.get('E', 'n/a')} lags each), y = the muscle signal; rho x->y is the joints' embedding "
             f"predicting the signal, from the smallest to the largest library (Kendall tau of rho against the "
             f"library size), with neighbours from other reaches only (`exclusion: {settings.get('exclusion', 'n/a')}`). "
             "Each null is the mean rho of surrogate signals at the full library, with p = (1 + #null >= rho) / "
             "(1 + n): clip_ebisuzaki keeps each reach's spectrum, clip_swap gives each reach another reach's signal "
             "(what reaches share is kept, only the pairing is broken).", ""]
    ccm = edm.get("ccm")
    if isinstance(ccm, Mapping):
        rows = []
        for pair, by in ccm.items():
            if not isinstance(by, Mapping):
                continue
            for slot in sorted(by, key=lambda k: (k != "reference", weight_order(k) if k != "reference" else 0)):
                e = by[slot]
                if not isinstance(e, Mapping) or "rho_x_to_y" not in e:
                    rows.append([pair, slot, "-", "-", "-", "-", *["-"] * len(methods),
                                 (e or {}).get("note", "") if isinstance(e, Mapping) else ""])
                    continue
                conv = (e.get("convergence") or {}).get("x_to_y") or {}
                Ls = e.get("lib_sizes") or []
                rows.append([pair, "reference (policy-free)" if slot == "reference" else f"lambda_ctrl {slot}",
                             f"{Ls[0]}-{Ls[-1]}" if Ls else "-",
                             f"{fmt(conv.get('rho_min_lib'))} -> {fmt(conv.get('rho_max_lib'))}",
                             fmt(conv.get("kendall_tau"), "+.2f"), fmt(e.get("rho_y_to_x_max_lib")),
                             *[_null(e, m) for m in methods], ""])
        lines += md_table(["pair", "policy", "library", "rho x->y", "Kendall tau", "rho y->x (largest)",
                           *[f"{m} null" for m in methods], "note"], rows)
        lines.append("")
    sm = edm.get("smap_nonlinearity")
    if isinstance(sm, Mapping):
        rows = []
        for ch, e in sm.items():
            if not isinstance(e, Mapping) or "rho" not in e:
                rows.append([ch, "-", "-", "-", "-", (e or {}).get("note", "") if isinstance(e, Mapping) else ""])
                continue
            rows.append([ch, fmt(e.get("rho_theta0")), fmt(e.get("theta_best"), "g"), fmt(e.get("rho_best")),
                         fmt(e.get("rho_gain"), "+.3f"), ""])
        sms = (edm.get("settings") or {}).get("smap") or {}
        lines += [f"S-map (`edm.smap`, pyEDM PredictNonlinear): each EMG envelope predicting itself "
                  f"(E {sms.get('E', 'n/a')}), rho at theta 0 (a global linear map) and at the best theta; a gain "
                  "above 0 is the mark of state-dependent (nonlinear) dynamics. The gain is a description: it is "
                  "not tested against a null (the best theta is picked on the same predictions).", ""]
        lines += md_table(["channel", "rho theta 0", "best theta", "rho there", "gain", "note"], rows)
        lines.append("")
    return lines
