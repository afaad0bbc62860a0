"""UsageError: library messages name settings; each command line shows its own flags in their place."""

from dvtoolbox.errors import UsageError


def test_the_first_mention_of_each_field_becomes_the_flag():
    exc = UsageError("push_channel 5 is out of range: layer 'fc8' has 5 channels; push_channel counts from 0",
                     "push_channel")
    assert exc.message_for({}) == ("--push-channel 5 is out of range: layer 'fc8' has 5 channels; push_channel "
                                   "counts from 0")
    assert str(exc).startswith("push_channel 5")  # the library's own text is unchanged


def test_flags_that_are_not_the_dashed_field_and_several_fields():
    exc = UsageError("deploy_proto and net_weights go together; allow_tf32 too", "deploy_proto", "net_weights",
                     "allow_tf32")
    assert exc.message_for({"allow_tf32": "--tf32"}) == "--deploy-proto and --net-weights go together; --tf32 too"


def test_only_whole_names_are_replaced():
    exc = UsageError("mean_image is not mean: cannot read mean file 'a.npy'", "mean")
    assert exc.message_for({}) == "mean_image is not --mean: cannot read mean file 'a.npy'"
    assert UsageError("no field named").message_for({"x": "--x"}) == "no field named"
