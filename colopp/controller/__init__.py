"""The controller: talks to host agents, drives the pair's lifecycle."""
