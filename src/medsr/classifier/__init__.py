"""The diagnostic / guide classifiers (torchvision families, resnet18 first): the network and its file (`model`), a
user's own deployed classifier (`deployed`), early stopping (`stopping`) and the predictions CSV (`predictions`)."""
