"""Jobs that run several verbs in one go: the main job (`rnnbench run`) and the GPU job (`rnnbench
gpu`)."""
