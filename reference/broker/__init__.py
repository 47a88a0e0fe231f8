"""MQTT broker for configuration distribution: mosquitto when installed, else an embedded one."""
