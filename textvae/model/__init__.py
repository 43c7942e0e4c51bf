"""The VAE (encode -> (mu, logvar), reparameterize, decode), the priors over its codes and the objective."""

from .. import lazy

__getattr__ = lazy(__name__, ("vae", "codes", "slots", "prior", "objective", "slotprior"))
