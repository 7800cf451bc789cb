"""What problems, models, decoding and export agree on: reserved ids and split names.

Every id sequence is int32 with PAD = 0 after its end and EOS = 1 as its last
token (the vocabulary's first tokens are <pad>, <EOS>, [UNK]); every problem
has the splits train, dev and test.
"""

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2

TRAIN, DEV, TEST = SPLITS = ("train", "dev", "test")
