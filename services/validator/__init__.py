"""The validator: NGC's quality gate between the receiver and the harmoniser."""
