"""Evaluation metrics of a learned diffusion: likelihood by the probability-flow ODE, Fréchet distance.

- :func:`pf_ode_nll`, :func:`dequantized_nll` — ``−log p`` by the instantaneous
  change of variables (exact or Hutchinson trace), and the uniform-dequantisation
  bound on the discrete NLL in bits per (real) dimension;
- :func:`frechet_distance` — the Fréchet distance between two feature sets;
- :func:`train_classifier` / :func:`load_or_train_classifier` — the small
  classifier whose penultimate features the Fréchet distance uses (seeded, cached);
- :func:`evaluate` — everything an ``eval`` command prints, in one dict.

See ``docs/metrics.md``.
"""

from .classifier import (ClassifierConfig, SmallClassifier, TrainedClassifier, cache_dir, classifier_key,
                         dataset_labels, default_config, load_or_train_classifier, train_classifier)
from .evaluate import EVAL_KEYS, EXACT_TRACE_MAX_DIM, evaluate
from .frechet import feature_moments, frechet_distance, frechet_distance_from_moments
from .likelihood import (NLLResult, band_stop_times, dequantize, dequantized_nll, noise_prior, pf_ode_nll,
                         point_mass_stop_times)

__all__ = ["evaluate", "EVAL_KEYS", "EXACT_TRACE_MAX_DIM", "ClassifierConfig", "SmallClassifier", "TrainedClassifier", "cache_dir", "classifier_key", "dataset_labels",
           "default_config", "load_or_train_classifier", "train_classifier",
           "frechet_distance", "frechet_distance_from_moments", "feature_moments",
           "NLLResult", "pf_ode_nll", "dequantize", "dequantized_nll", "band_stop_times", "noise_prior",
           "point_mass_stop_times"]
