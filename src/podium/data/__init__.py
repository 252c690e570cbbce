"""A competition folder as data: reading, checking, decoding, splitting, sampling; and the
embedded demo competitions. Imports nothing from podium.model."""
