"""Related products: pairwise association rules mined from customer order lines (market basket).

The basket matrix is orders x SKUs, boolean and sparse (a ``pandas`` sparse frame over a SciPy
CSR matrix: an order holds a handful of SKUs, so a catalogue of thousands of SKUs costs memory
in proportion to the order lines, not orders x SKUs). Frequent itemsets come from ``mlxtend``'s
FP-growth (no candidate generation, reads the sparse matrix as is), limited to pairs
(``max_len=2``): a related product is one SKU bought with another. ``association_rules`` then
gives each direction ``sku -> related_sku`` its support (share of orders holding both),
confidence (share of the orders holding ``sku`` that also hold ``related_sku``) and lift
(confidence over the related SKU's own support). Rules are kept when all three reach the
thresholds of :class:`RelatedConfig`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

RELATED_COLUMNS = ["sku", "related_sku", "support", "confidence", "lift"]


@dataclass(frozen=True)
class RelatedConfig:
    """Thresholds a rule must reach (defaults: see README "Related products")."""

    min_support: float = 0.001
    min_confidence: float = 0.2
    min_lift: float = 3.0


def basket_matrix(lines: pd.DataFrame) -> pd.DataFrame:
    """Orders x SKUs, True where the order holds the SKU (a sparse boolean frame)."""
    orders = pd.Categorical(lines["order_id"].astype(str))
    skus = pd.Categorical(lines["sku"].astype(str))
    data = np.ones(len(lines), dtype=bool)
    m = sp.csr_matrix((data, (orders.codes, skus.codes)), shape=(len(orders.categories), len(skus.categories)))
    m.sum_duplicates()
    m.data[:] = True  # a SKU on two lines of one order is in the basket once
    with warnings.catch_warnings():  # pandas' notice about the bool fill value of from_spmatrix
        warnings.simplefilter("ignore", FutureWarning)
        return pd.DataFrame.sparse.from_spmatrix(m, index=orders.categories, columns=skus.categories)


def frequent_itemsets(basket: pd.DataFrame, min_support: float, method: str = "cooccurrence") -> pd.DataFrame:
    """Frequent SKUs and SKU pairs (mlxtend's ``itemsets``/``support`` frame).

    ``cooccurrence`` counts pairs with one sparse product (basket' x basket, only the SKUs that
    are frequent on their own): exactly the itemsets of ``fpgrowth(max_len=2)``, in seconds
    for a thousand SKUs and 230,000 orders where mlxtend's FP-growth, a Python loop over the
    orders, takes minutes. ``fpgrowth`` and ``apriori`` call mlxtend (the tests check all agree).
    """
    n = len(basket)
    if method in ("fpgrowth", "apriori"):
        from mlxtend.frequent_patterns import apriori, fpgrowth

        fn = fpgrowth if method == "fpgrowth" else apriori
        return fn(basket, min_support=min_support, use_colnames=True, max_len=2)
    if method != "cooccurrence":
        raise ValueError(f"unknown method {method!r}: cooccurrence, fpgrowth or apriori")
    m = basket.sparse.to_coo().tocsc().astype(np.int64)
    counts = np.asarray(m.sum(axis=0)).ravel()
    min_count = min_support * n
    keep = np.flatnonzero(counts >= min_count - 1e-9)
    names = basket.columns[keep]
    singles = [(frozenset([str(c)]), counts[k] / n) for c, k in zip(names, keep, strict=True)]
    co = sp.triu(m[:, keep].T @ m[:, keep], k=1).tocoo()
    frequent = co.data >= min_count - 1e-9
    pairs = [
        (frozenset([str(names[i]), str(names[j])]), c / n)
        for i, j, c in zip(co.row[frequent], co.col[frequent], co.data[frequent], strict=True)
    ]
    return pd.DataFrame(singles + pairs, columns=["itemsets", "support"])


def related_products(
    lines: pd.DataFrame, config: RelatedConfig | None = None, method: str = "cooccurrence"
) -> pd.DataFrame:
    """One row per rule ``sku -> related_sku`` that reaches the thresholds, strongest first per SKU."""
    from mlxtend.frequent_patterns import association_rules

    config = config or RelatedConfig()
    empty = pd.DataFrame({c: pd.Series(dtype=object if "sku" in c else float) for c in RELATED_COLUMNS})
    if lines.empty:
        return empty
    basket = basket_matrix(lines)
    itemsets = frequent_itemsets(basket, config.min_support, method)
    if (itemsets["itemsets"].map(len) == 2).sum() == 0:
        return empty
    rules = association_rules(
        itemsets, num_itemsets=len(basket), metric="confidence", min_threshold=config.min_confidence
    )
    rules = rules[rules["lift"] >= config.min_lift]
    out = pd.DataFrame(
        {
            "sku": rules["antecedents"].map(lambda s: next(iter(s))).astype(str),
            "related_sku": rules["consequents"].map(lambda s: next(iter(s))).astype(str),
            "support": rules["support"].astype(float),
            "confidence": rules["confidence"].astype(float),
            "lift": rules["lift"].astype(float),
        }
    )
    return out.sort_values(["sku", "confidence", "lift"], ascending=[True, False, False]).reset_index(drop=True)


def score_rules(found: pd.DataFrame, planted: list[dict]) -> dict:
    """Recall and precision of found rules against planted ones, matched as unordered SKU pairs.

    A planted rule is the pair {antecedent, consequent} the generator tied together; a found rule
    ``a -> b`` or ``b -> a`` recovers it (mining finds both directions of a strong pair; the
    reverse one passes the thresholds when the consequent rarely sells alone). Precision counts
    distinct found pairs.
    """
    want = {frozenset((p["antecedent"], p["consequent"])) for p in planted}
    got = {frozenset((a, b)) for a, b in zip(found["sku"], found["related_sku"], strict=True)}
    directed = {(a, b) for a, b in zip(found["sku"], found["related_sku"], strict=True)}
    hit = want & got
    return {
        "planted": len(want),
        "found_pairs": len(got),
        "recovered": len(hit),
        "recall": len(hit) / len(want) if want else 1.0,
        "precision": len(hit) / len(got) if got else 1.0,
        "directed_recall": (
            sum((p["antecedent"], p["consequent"]) in directed for p in planted) / len(planted) if planted else 1.0
        ),
    }
