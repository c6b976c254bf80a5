"""Training with GenPercept's recipe: the VAE, the task UNets, and the embedded model's recipe."""
