"""Model folders: finding them (local, hub, embedded), their typed settings, weights and the empty-text embedding."""
