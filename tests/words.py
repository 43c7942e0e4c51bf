"""Made-up words and a tiny model size shared by the tests."""

WORDS = ("apple banana cherry grape lemon mango melon olive peach pear plum berry "
         "almond walnut pecan cashew hazel acorn maple cedar birch aspen willow larch "
         "river ocean stream brook creek delta marsh swamp bayou lagoon harbor island").split()

TINY_MODEL = dict(embed_dim=16, hidden_dim=32, latent_dim=8)
