from kinsul.tokenizers.text import SPECIALS, TextTokenizer
from kinsul.world.language import WORDS, loc_words


def test_vocabulary_layout_and_round_trip(tmp_path):
    tok = TextTokenizer.for_world(loc_bins=16, n_action_tokens=32)
    assert tok.vocab_size == len(SPECIALS) + len(WORDS) + 16 + 32
    assert tok.action_offset == tok.vocab_size - 32
    text = "what is left of the red square loc03 loc15"
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode([*tok.encode("red"), tok.eos_id, *tok.encode("blue")]) == "red"
    assert tok.decode(tok.action_ids([0, 31])) == "<act0> <act31>"
    assert tok.encode("zebra") == [tok.vocab["<unk>"]]
    tok.save(tmp_path / "tok.json")
    again = TextTokenizer.load(tmp_path / "tok.json")
    assert again.vocab == tok.vocab and again.vocab_size == tok.vocab_size


def test_batch_pads_right_and_masks():
    tok = TextTokenizer.for_world(loc_bins=4, n_action_tokens=8)
    enc = tok.batch([tok.encode("red square"), tok.encode("blue")])
    assert enc.ids.shape == (2, 2) and enc.mask.tolist() == [[True, True], [True, False]]
    assert set(loc_words(4)) <= set(tok.vocab)
