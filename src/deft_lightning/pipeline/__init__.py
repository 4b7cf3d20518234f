"""The two phases as plain functions over a composed config, shared by the train and detect entry points."""
