"""Kubernetes support: the KafkaTopic and KafkaUser generators behind ``k8s/base/kafka/``."""
