"""Free-text columns as numbers: tf-idf n-grams reduced by a truncated SVD (latent semantic
analysis), the field's usual way to give names, titles and descriptions to trees and networks.

scikit-learn fits it (`fit_text_models`: `TfidfVectorizer` with sublinear term frequencies and
l2-normalised rows, then `TruncatedSVD`); what it learned is kept as plain lists and strings
(`text_stats`: the terms in column order, their idf weights, the SVD components and the
vectorizer's settings), so a checkpoint read with `torch.load(weights_only=True)` carries it.
`text_components` applies it from those numbers alone: the counts of the stored terms
(scikit-learn's `CountVectorizer` with the stored vocabulary: the same analyzer, so the same
tokens), 1 + log of each count, times the idf, rows scaled to unit length, then projected on
the components; exactly what the fitted `svd.transform(tfidf.transform(texts))` returns.

The fit reads no label: it is unsupervised, so podium fits it on the text of every training
and test row (the validation rows' words are then as known as the test rows' are).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ANALYZERS = ("word", "char_wb")  # word n-grams | character n-grams inside word boundaries
MIN_DOCUMENTS = 2  # a term in fewer rows says nothing about another row


def fit_text_models(texts: Sequence[str], components: int, analyzer: str = "word",
                    ngrams: Sequence[int] = (1, 2), max_terms: int = 2000):
    """(TfidfVectorizer, TruncatedSVD) fitted on `texts`, or None when too few terms are
    shared by two rows to give one component."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = TfidfVectorizer(analyzer=analyzer, ngram_range=tuple(ngrams), min_df=MIN_DOCUMENTS,
                            max_features=max_terms, sublinear_tf=True, dtype=np.float64)
    try:
        weights = tfidf.fit_transform(list(texts))
    except ValueError:  # no term in two rows (or nothing but stop characters)
        return None
    k = min(components, weights.shape[1] - 1, weights.shape[0] - 1)
    if k < 1:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):  # explained variance of 0 / 0
        return tfidf, TruncatedSVD(k, random_state=0).fit(weights)


def text_stats(tfidf, svd) -> dict:
    """What the fitted pair learned, as plain lists and strings."""
    vocabulary = tfidf.vocabulary_
    return {"analyzer": tfidf.analyzer, "ngrams": list(tfidf.ngram_range),
            "terms": sorted(vocabulary, key=vocabulary.get), "idf": tfidf.idf_.tolist(),
            "components": svd.components_.tolist()}


def fit_text(texts: Sequence[str], components: int, analyzer: str = "word",
             ngrams: Sequence[int] = (1, 2), max_terms: int = 2000) -> dict | None:
    models = fit_text_models(texts, components, analyzer, ngrams, max_terms)
    return None if models is None else text_stats(*models)


def text_components(texts: Sequence[str], stats: dict) -> np.ndarray:
    """float64 (N, k): the stored tf-idf + SVD of `texts` (words never seen in the fit
    count for nothing; a text of none of the stored terms is all zeros)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.preprocessing import normalize

    counts = CountVectorizer(vocabulary=stats["terms"], analyzer=stats["analyzer"],
                             ngram_range=tuple(stats["ngrams"]),
                             dtype=np.float64).transform(list(texts))
    counts.data = 1.0 + np.log(counts.data)  # sublinear term frequency
    weighted = normalize(counts.multiply(np.asarray(stats["idf"])[None, :]).tocsr())
    return np.asarray(weighted @ np.asarray(stats["components"]).T)


def describe(stats: dict) -> str:
    """`8 SVD components of word 1-2 gram tf-idf (1,204 terms)`."""
    low, high = stats["ngrams"]
    grams = f"{low}-{high}" if high != low else f"{low}"
    kind = "word" if stats["analyzer"] == "word" else "character"
    return (f"{len(stats['components'])} SVD components of {kind} {grams} gram tf-idf "
            f"({len(stats['terms']):,} terms)")
