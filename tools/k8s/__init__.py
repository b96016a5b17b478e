"""Kubernetes support: the KafkaTopic generator and the kustomize renderer the tests use."""
