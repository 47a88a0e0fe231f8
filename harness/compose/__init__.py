"""Docker Compose support: offline image build, in-container one-shot steps, the stack's plan."""
