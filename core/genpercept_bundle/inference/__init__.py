"""From photo to maps: pre/post-processing, the method seam (encode -> perceive -> decode), the predictor."""
