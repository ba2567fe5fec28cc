"""The federation registry: members, homeservers, peers, and the signed manifest."""
