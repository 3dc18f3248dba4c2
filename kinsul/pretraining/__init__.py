"""VLM pretraining of the shipped tiny VLM: a vision stage (`vision_stage`), then question answering on stored
or freshly rendered questions (`question_stream`), `kinsul pretrain-vlm` (`pretrain`)."""
