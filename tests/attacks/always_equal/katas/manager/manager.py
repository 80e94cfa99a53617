"""Attack: answers that are equal to anything."""


class Anything(int):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = int.__hash__


class AnyDict(dict):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False


def count_down(start=100, workers=50):
    return Anything(0)


def tally(words, workers=4):
    return AnyDict()
