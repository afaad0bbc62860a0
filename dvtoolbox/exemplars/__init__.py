"""What a unit responds to in real images (the original's find_maxes): each unit's top N images of a dataset
(``tracker``: the streaming top N and its file; ``data``: image lists and preprocessing; ``job``, ``checkpoint``:
find_max_acts as a job, resumable and sharded), and their crops, deconv and backprop images (``receptive_field``,
``patches``, ``unit_pages``)."""
