"""Case lifecycle beyond opening: the lifetime shown to everyone, the warning before the
first messages disappear, and the journal that makes ``!case new`` exactly-once."""
