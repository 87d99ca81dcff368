"""The ResNet18 diagnostic / guide classifier: network, training stage, and inference helpers."""

from medsr.classifier.model import build_classifier, load_classifier, predict_proba

__all__ = ["build_classifier", "load_classifier", "predict_proba"]
