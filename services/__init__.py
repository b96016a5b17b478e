"""The five genomhub services; each folder is one service, and they meet only through events."""
