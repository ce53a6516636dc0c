"""Applying a trained model: checkpoints -> networks with their configs (:mod:`.model`), inputs and video
output (:mod:`.media`), image ids and person boxes (:mod:`.boxes`), top-down and bottom-up prediction on
whole frames (:mod:`.topdown`, :mod:`.bottomup`), drawing (:mod:`.render`), the whole run
(:mod:`.apply`) and ``poselab predict`` (:mod:`.cli`)."""
