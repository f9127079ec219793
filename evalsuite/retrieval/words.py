"""Word lists for the generated needles and facts: common English words only, so that any tokenizer trained on English
text spells them in a few tokens."""

ADJECTIVES = (
    "amber", "ancient", "bitter", "brave", "bright", "calm", "clever", "cold", "crimson", "curious", "dark", "distant",
    "dusty", "eager", "early", "empty", "faint", "fierce", "gentle", "golden", "grand", "green", "hidden", "hollow",
    "humble", "icy", "idle", "jolly", "kind", "late", "lazy", "little", "lonely", "lucky", "merry", "misty", "narrow",
    "noble", "odd", "pale", "plain", "proud", "quiet", "rapid", "rough", "rusty", "sharp", "shiny", "silent", "silver",
    "slow", "smooth", "soft", "sour", "steady", "still", "strange", "sunny", "swift", "tall", "tender", "tiny", "warm",
    "wild",
)

NOUNS = (
    "anchor", "apple", "arrow", "badger", "basket", "beacon", "bell", "bridge", "brook", "candle", "castle", "cedar",
    "cliff", "cloud", "comet", "copper", "crane", "crown", "desert", "dragon", "eagle", "ember", "falcon", "feather",
    "forest", "fountain", "garden", "glacier", "harbor", "hammer", "island", "ivory", "jacket", "kettle", "ladder",
    "lantern", "lemon", "marble", "meadow", "mirror", "monkey", "needle", "orchard", "otter", "panther", "pebble",
    "pepper", "pillow", "planet", "pocket", "rabbit", "river", "saddle", "shadow", "spider", "squirrel", "thunder",
    "tiger", "tower", "valley", "violin", "wagon", "window", "wizard",
)

PEOPLE = (
    "Mary", "John", "Sandra", "Sophie", "Fred", "Bill", "Julie", "Jeff", "Emily", "Henry", "Lucy", "Peter", "Alice",
    "Oliver", "Grace", "Thomas",
)

PLACES = ("kitchen", "garden", "hallway", "bathroom", "bedroom", "office", "cellar", "library")

OBJECTS = ("football", "apple", "milk", "umbrella", "lantern", "basket", "violin", "hammer", "kettle", "map")

MOVE_VERBS = ("went to", "journeyed to", "travelled to", "moved to")
TAKE_VERBS = ("picked up", "grabbed", "took", "got")
GIVE_VERBS = ("gave", "handed", "passed")
