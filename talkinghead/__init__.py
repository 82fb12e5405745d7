"""The talkinghead engine: THA3 networks, poser, animator, renderer, streaming. Imports no Flask."""
