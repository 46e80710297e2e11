"""The answer engine: from knowledge files to a cited `Answer`, with no idea who asked or through which channel.

text (Vietnamese normalisation, folding, diacritics), knowledge (the file format and its checks), chunks, encoder
and modelprep (the e5 model, offline), index (build and open a version), retrieval (candidates and ranking),
answer (compose one channel-agnostic `Answer`), assistant (what the service calls), privacy (masking), phrases
(the hotline and the apologies every part says to citizens, one wording each).

The engine imports only itself and `bot.config`: never a channel, the service or the staff tools.
"""
