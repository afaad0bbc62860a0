"""What a unit responds to in real images (the original's find_maxes): the top-N dataset images of each unit, and
their crops, deconv and backprop images (receptive_field.py, patches.py, unit_pages.py)."""
