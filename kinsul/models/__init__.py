"""Neural parts of the method: the PaliGemma-layout backbone (`backbone`), the action expert (`expert`), the
shared-attention layer loop (`mot`), masks, flow matching, the VLA and its assembly (`vla`, `build`), chunk
decoding by flow or FAST tokens (`decoding`)."""
