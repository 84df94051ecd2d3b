"""streamfuse: streaming wearable-sensor fusion.

The sans-IO core (:class:`streamfuse.engine.Engine`) turns chunks of samples and labels into
predictions; thin shells (MQTT gateway, replay, benchmark) feed it and carry outputs away.
"""

__version__ = "0.1.0"
