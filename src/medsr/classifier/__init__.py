"""The diagnostic / guide classifiers (torchvision families, resnet18 first): network, training stage, inference."""

from medsr.classifier.model import build_classifier, load_classifier, predict_proba

__all__ = ["build_classifier", "load_classifier", "predict_proba"]
