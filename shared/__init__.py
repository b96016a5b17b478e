"""The common library of genomhub: one implementation of each mechanism the services share."""
